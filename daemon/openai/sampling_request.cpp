#include "daemon/openai/sampling_request.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "daemon/openai/request_limits.h"

namespace bm::daemon::openai {
namespace {

using json = RequestJson;

// Reads one optional field with a type check; absent and null leave `out` untouched.
class FieldReader {
 public:
  explicit FieldReader(const json& body) : body_(body) {}
  bool failed() const { return error_.has_value(); }
  ApiError error() const { return *error_; }

  template <typename T>
  bool read_number(const char* name, T& out, double lo, double hi) {
    const json* v = find(name);
    if (v == nullptr) return false;
    if (!v->is_number() || (std::is_integral_v<T> && !v->is_number_integer())) {
      fail(name, absl::StrCat("'", name, "' must be ", std::is_integral_v<T> ? "an integer" : "a number"));
      return false;
    }
    double d = v->get<double>();
    if (!std::isfinite(d) || d < lo || d > hi) {
      fail(name, absl::StrCat("'", name, "' must be in [", lo, ", ", hi, "], got ", v->dump()));
      return false;
    }
    out = std::is_integral_v<T> ? static_cast<T>(v->get<int64_t>()) : static_cast<T>(d);
    return true;
  }

  template <typename T>
  void read_optional(const char* name, std::optional<T>& out, double lo, double hi) {
    T value{};
    if (read_number(name, value, lo, hi)) out = value;
  }

  void read_bool(const char* name, bool& out) {
    const json* v = find(name);
    if (v == nullptr) return;
    if (!v->is_boolean()) return fail(name, absl::StrCat("'", name, "' must be a boolean"));
    out = v->get<bool>();
  }

  const json* find(const char* name) {
    if (failed()) return nullptr;
    auto it = body_.find(name);
    if (it == body_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  void fail(const char* name, std::string message) {
    if (!error_) error_ = ApiError{400, std::move(message), name};
  }

 private:
  const json& body_;
  std::optional<ApiError> error_;
};

}  // namespace

std::variant<SamplingRequest, ApiError> parse_sampling_request(const json& body, Endpoint endpoint,
                                                               int32_t vocab_size) {
  SamplingRequest req;
  FieldReader r(body);
  r.read_number("n", req.n, 1, kMaxChoices);
  std::optional<int32_t> max_tokens;
  r.read_optional("max_tokens", max_tokens, 1, 1e9);
  if (endpoint == Endpoint::kChat) r.read_optional("max_completion_tokens", max_tokens, 1, 1e9);
  req.max_tokens = max_tokens;
  r.read_number("min_tokens", req.min_tokens, 0, 1e9);
  r.read_optional("temperature", req.temperature, 0, 2);
  r.read_optional("top_p", req.top_p, 0, 1);
  if (req.top_p && *req.top_p == 0) r.fail("top_p", "'top_p' must be in (0, 1], got 0");
  r.read_optional("top_k", req.top_k, -1, 1e9);
  if (req.top_k && *req.top_k == 0) req.top_k = -1;  // 0 means "no top-k" in several clients
  r.read_number("min_p", req.min_p, 0, 1);
  r.read_number("presence_penalty", req.presence_penalty, -2, 2);
  r.read_number("frequency_penalty", req.frequency_penalty, -2, 2);
  r.read_optional("repetition_penalty", req.repetition_penalty, 0.01, 10);
  std::optional<uint64_t> seed;
  if (const json* v = r.find("seed")) {
    if (!v->is_number_integer()) {
      r.fail("seed", "'seed' must be an integer");
    } else {
      seed = v->is_number_unsigned() ? v->get<uint64_t>() : static_cast<uint64_t>(v->get<int64_t>());
    }
  }
  req.seed = seed;
  if (const json* v = r.find("stop")) {
    const std::string shape =
        absl::StrCat("'stop' must be a string or a list of at most ", kMaxStopStrings, " strings");
    if (v->is_string()) {
      req.stop.push_back(v->get<std::string>());
    } else if (v->is_array() && v->size() <= kMaxStopStrings) {
      for (const json& s : *v) {
        if (!s.is_string()) {
          r.fail("stop", shape);
          break;
        }
        req.stop.push_back(s.get<std::string>());
      }
    } else {
      r.fail("stop", v->is_array() ? absl::StrCat(shape, ", got ", v->size()) : shape);
    }
    size_t total = 0;
    for (const std::string& s : req.stop) {
      total += s.size();
      if (s.size() > kMaxStopStringBytes) {
        r.fail("stop", absl::StrCat("each stop string may have at most ", kMaxStopStringBytes, " bytes, got one of ",
                                    s.size()));
        break;
      }
    }
    if (total > kMaxStopBytesTotal)
      r.fail("stop",
             absl::StrCat("the stop strings may have at most ", kMaxStopBytesTotal, " bytes together, got ", total));
  }
  if (const json* v = r.find("stop_token_ids")) {
    if (!v->is_array()) r.fail("stop_token_ids", "'stop_token_ids' must be a list of token ids");
    if (v->is_array() && v->size() > kMaxStopTokenIds)
      r.fail("stop_token_ids",
             absl::StrCat("'stop_token_ids' may hold at most ", kMaxStopTokenIds, " ids, got ", v->size()));
    for (size_t i = 0; v->is_array() && !r.failed() && i < v->size(); ++i) {
      const json& id = (*v)[i];
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab_size) {
        r.fail("stop_token_ids", absl::StrCat("'stop_token_ids' must hold token ids in [0, ", vocab_size, ")"));
        break;
      }
      req.stop_token_ids.push_back(id.get<int32_t>());
    }
  }
  if (const json* v = r.find("logit_bias")) {
    if (!v->is_object()) r.fail("logit_bias", "'logit_bias' must be an object mapping token ids to biases");
    if (v->is_object() && v->size() > kMaxLogitBiasEntries)
      r.fail("logit_bias",
             absl::StrCat("'logit_bias' may hold at most ", kMaxLogitBiasEntries, " entries, got ", v->size()));
    for (auto it = v->is_object() && !r.failed() ? v->begin() : v->end(); it != v->end(); ++it) {
      char* end = nullptr;
      long id = std::strtol(it.key().c_str(), &end, 10);
      if (it.key().empty() || *end != '\0' || id < 0 || id >= vocab_size) {
        r.fail("logit_bias",
               absl::StrCat("'logit_bias' key '", it.key(), "' is not a token id in [0, ", vocab_size, ")"));
        break;
      }
      if (!it->is_number() || it->get<double>() < -100 || it->get<double>() > 100) {
        r.fail("logit_bias", "'logit_bias' values must be numbers in [-100, 100]");
        break;
      }
      req.logit_bias[static_cast<int32_t>(id)] = it->get<float>();
    }
  }
  r.read_bool("ignore_eos", req.ignore_eos);
  r.read_bool("skip_special_tokens", req.skip_special_tokens);
  r.read_bool("stream", req.stream);
  if (const json* v = r.find("stream_options")) {
    if (!v->is_object()) {
      r.fail("stream_options", "'stream_options' must be an object");
    } else if (v->contains("include_usage") && !(*v)["include_usage"].is_null()) {
      if (!(*v)["include_usage"].is_boolean()) {
        r.fail("stream_options", "'stream_options.include_usage' must be a boolean");
      } else {
        req.include_usage = (*v)["include_usage"].get<bool>();
      }
    }
    if (!r.failed() && !req.stream) r.fail("stream_options", "'stream_options' is only allowed with 'stream': true");
  }
  if (endpoint == Endpoint::kChat) {
    bool logprobs = false;
    r.read_bool("logprobs", logprobs);
    int32_t top = 0;
    bool has_top = r.read_number("top_logprobs", top, 0, 20);
    if (has_top && !logprobs && !r.failed()) r.fail("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (logprobs) req.logprobs = top;
  } else {
    int32_t logprobs = -1;
    if (r.read_number("logprobs", logprobs, 0, 20)) req.logprobs = logprobs;
  }
  // response_format and the guided_* fields: structured_output.cpp.
  if (!r.failed() && req.max_tokens && req.min_tokens > *req.max_tokens)
    r.fail("min_tokens", "'min_tokens' must not exceed 'max_tokens'");
  if (r.failed()) return r.error();
  return req;
}

}  // namespace bm::daemon::openai
