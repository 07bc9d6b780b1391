#include "cli/extra_params.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bmserver/v1/serving.pb.h"
#include "common/kv_cache_dtype.h"

namespace bm::cli {
namespace {

using bmserver::v1::ServeOptions;

enum class Takes { kNothing, kValue };

// One vLLM engine argument: whether it takes a value, and what it does to ServeOptions. `apply` returns an empty
// string when it took the value, else why not (a clause that follows the argument's name).
struct Param {
  std::string_view name;
  Takes takes;
  std::function<std::string(ServeOptions&, const std::string&)> apply;
};

std::string positive_int(const std::string& v, int64_t max, const std::function<void(int32_t)>& set) {
  int64_t n = 0;
  if (!absl::SimpleAtoi(v, &n) || n < 1 || n > max) return absl::StrCat("needs a whole number from 1 to ", max);
  set(static_cast<int32_t>(n));
  return "";
}

const std::vector<Param>& params() {
  static const std::vector<Param> table = {
      {"--max-model-len", Takes::kValue,
       [](ServeOptions& o, const std::string& v) {
         return positive_int(v, 1 << 24, [&](int32_t n) { o.set_max_model_len(n); });
       }},
      {"--max-num-seqs", Takes::kValue,
       [](ServeOptions& o, const std::string& v) {
         return positive_int(v, 65536, [&](int32_t n) { o.set_max_num_seqs(n); });
       }},
      {"--max-num-batched-tokens", Takes::kValue,
       [](ServeOptions& o, const std::string& v) {
         return positive_int(v, 1 << 24, [&](int32_t n) { o.set_max_num_batched_tokens(n); });
       }},
      {"--gpu-memory-utilization", Takes::kValue,
       [](ServeOptions& o, const std::string& v) -> std::string {
         double f = 0;
         if (!absl::SimpleAtod(v, &f) || !(f > 0 && f <= 1)) return "needs a fraction in (0, 1]";
         o.set_gpu_memory_utilization(f);
         return "";
       }},
      {"--seed", Takes::kValue,
       [](ServeOptions& o, const std::string& v) -> std::string {
         uint64_t seed = 0;
         if (!absl::SimpleAtoi(v, &seed)) return "needs a whole number of at least 0";
         o.set_seed(seed);
         return "";
       }},
      {"--api-key", Takes::kValue,
       [](ServeOptions& o, const std::string& v) {
         o.set_api_key(v);
         return std::string();
       }},
      {"--enforce-eager", Takes::kNothing,
       [](ServeOptions& o, const std::string&) {
         o.set_enforce_eager(true);
         return std::string();
       }},
      {"--enable-prefix-caching", Takes::kNothing,
       [](ServeOptions& o, const std::string&) {
         o.set_disable_prefix_caching(false);
         return std::string();
       }},
      {"--no-enable-prefix-caching", Takes::kNothing,
       [](ServeOptions& o, const std::string&) {
         o.set_disable_prefix_caching(true);
         return std::string();
       }},
      {"--tensor-parallel-size", Takes::kValue,
       [](ServeOptions& o, const std::string& v) -> std::string {
         int64_t n = 0;
         if (!absl::SimpleAtoi(v, &n) || n < 1 || n > 64) return "needs a whole number from 1 to 64";
         o.set_tensor_parallel_size(static_cast<int32_t>(n));
         return "";
       }},
      {"--kv-cache-dtype", Takes::kValue,
       [](ServeOptions& o, const std::string& v) -> std::string {
         if (common::canonical_kv_cache_dtype(v).ok()) {
           o.set_kv_cache_dtype(v);
           return "";
         }
         return absl::StrCat("'", v, "' is not available: the KV cache is bfloat16 (auto) or float32");
       }},
      // vLLM's media flags, as the serve flags of the same names (the daemon checks the values).
      {"--limit-mm-per-prompt", Takes::kValue,
       [](ServeOptions& o, const std::string& v) {
         o.set_limit_mm_per_prompt(v);
         return std::string();
       }},
      {"--mm-processor-kwargs", Takes::kValue,
       [](ServeOptions& o, const std::string& v) {
         o.set_mm_processor_kwargs(v);
         return std::string();
       }},
      {"--allowed-local-media-path", Takes::kValue,  // absolute: the daemon refuses a relative one, saying so
       [](ServeOptions& o, const std::string& v) {
         o.set_allowed_local_media_path(v);
         return std::string();
       }},
      {"--allowed-media-domains", Takes::kValue,
       [](ServeOptions& o, const std::string& v) {
         o.set_allowed_media_domains(v);
         return std::string();
       }},
      {"--dtype", Takes::kValue,
       [](ServeOptions&, const std::string& v) -> std::string {
         if (v == "auto" || v == "bfloat16") return "";
         return absl::StrCat("'", v, "' is not available: weights run in the dtype they ship in (auto, bfloat16)");
       }},
      {"--block-size", Takes::kValue,
       [](ServeOptions&, const std::string& v) -> std::string {
         if (v == "16") return "";
         return absl::StrCat("'", v, "' is not available: KV blocks hold 16 tokens");
       }},
      {"--generation-config", Takes::kValue,
       [](ServeOptions&, const std::string& v) -> std::string {
         if (v == "auto") return "";
         return "is always auto here: sampling defaults come from the model's generation_config.json";
       }},
      // What the original's own command line already set, and what we always do.
      {"--enable-chunked-prefill", Takes::kNothing, [](ServeOptions&, const std::string&) { return std::string(); }},
      {"--disable-log-requests", Takes::kNothing, [](ServeOptions&, const std::string&) { return std::string(); }},
      {"--disable-log-stats", Takes::kNothing, [](ServeOptions&, const std::string&) { return std::string(); }},
  };
  return table;
}

const Param* find_param(std::string_view name) {
  for (const Param& p : params())
    if (p.name == name) return &p;
  return nullptr;
}

// vLLM's parser takes `--max_model_len` for `--max-model-len` and `-tp` for `--tensor-parallel-size`.
std::string canonical_name(std::string name) {
  if (name == "-tp") return "--tensor-parallel-size";
  for (size_t i = 2; i < name.size(); ++i)
    if (name[i] == '_') name[i] = '-';
  return name;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> split_shell_words(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
    } else if (c == '\'' || c == '"') {
      size_t close = text.find(c, i + 1);
      if (close == std::string::npos)
        return absl::InvalidArgumentError(
            absl::StrCat("--extra-params has an unclosed ", c == '\'' ? "'" : "\"", " quote"));
      word += text.substr(i + 1, close - i - 1);
      in_word = true;
      i = close;
    } else if (c == '\\' && i + 1 < text.size()) {
      word += text[++i];
      in_word = true;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(std::move(word));
  return words;
}

absl::Status apply_extra_params(const std::string& text, ServeOptions& options) {
  absl::StatusOr<std::vector<std::string>> words = split_shell_words(text);
  if (!words.ok()) return words.status();
  ServeOptions applied = options;  // applied to a copy: on any error the caller's options stay as they were
  std::vector<std::string> problems;
  for (size_t i = 0; i < words->size(); ++i) {
    std::string word = (*words)[i];
    std::optional<std::string> value;
    if (size_t eq = word.find('='); word.starts_with("-") && eq != std::string::npos) {
      value = word.substr(eq + 1);
      word = word.substr(0, eq);
    }
    if (!word.starts_with("-")) {
      problems.push_back(absl::StrCat("'", word, "' is not an argument (arguments start with --)"));
      continue;
    }
    const Param* param = find_param(canonical_name(word));
    if (!param) {
      problems.push_back(absl::StrCat(word, " has no meaning here"));
      if (!value && i + 1 < words->size() && !(*words)[i + 1].starts_with("-")) ++i;  // skip its value too
      continue;
    }
    if (param->takes == Takes::kNothing) {
      if (value)
        problems.push_back(absl::StrCat(word, " takes no value"));
      else if (std::string why = param->apply(applied, ""); !why.empty())
        problems.push_back(word + " " + why);
      continue;
    }
    if (!value) {
      if (i + 1 >= words->size() || (*words)[i + 1].starts_with("--")) {
        problems.push_back(absl::StrCat(word, " needs a value"));
        continue;
      }
      value = (*words)[++i];
    }
    if (std::string why = param->apply(applied, *value); !why.empty()) problems.push_back(word + " " + why);
  }
  if (!problems.empty())
    return absl::InvalidArgumentError(absl::StrCat("--extra-params: ", absl::StrJoin(problems, "; "),
                                                   " (accepted: ", absl::StrJoin(accepted_extra_params(), " "), ")"));
  options = std::move(applied);
  return absl::OkStatus();
}

std::vector<std::string> accepted_extra_params() {
  std::vector<std::string> names;
  for (const Param& p : params()) names.emplace_back(p.name);
  return names;
}

}  // namespace bm::cli
