#include "daemon/bench/openai_client.h"

#include <curl/curl.h>

#include <chrono>
#include <memory>
#include <mutex>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace bm::daemon::bench {
namespace {

using json = nlohmann::json;

void ensure_curl() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t append_body(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

struct Headers {
  curl_slist* list = nullptr;
  ~Headers() { curl_slist_free_all(list); }
  void add(const std::string& h) { list = curl_slist_append(list, h.c_str()); }
};

std::string error_message(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("error")) {
    const json& e = j["error"];
    if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
    if (e.is_string()) return e.get<std::string>();
  }
  if (!j.is_discarded() && j.is_object() && j.contains("detail") && j["detail"].is_string())
    return j["detail"].get<std::string>();
  return body.substr(0, 200);
}

// One streamed request in the multi handle.
struct Stream {
  RequestRecord record;
  std::unique_ptr<SseReader> reader;
  Headers headers;
  std::string body;
  CURL* easy = nullptr;
  size_t index = 0;
};

size_t on_stream_bytes(char* data, size_t size, size_t count, void* user) {
  auto* stream = static_cast<Stream*>(user);
  stream->reader->feed(data, size * count, now_seconds());
  return size * count;
}

}  // namespace

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void SseReader::feed(const char* data, size_t size, double now_s) {
  buffer_.append(data, size);
  if (raw_.size() < 4096) raw_.append(data, std::min<size_t>(size, 4096 - raw_.size()));
  // Events end at a blank line; lines may end in \r\n.
  for (;;) {
    size_t end = buffer_.find('\n');
    if (end == std::string::npos) break;
    std::string line = buffer_.substr(0, end);
    buffer_.erase(0, end + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (absl::StartsWith(line, "data:")) on_data(std::string(absl::StripLeadingAsciiWhitespace(line.substr(5))), now_s);
  }
}

void SseReader::on_data(const std::string& payload, double now_s) {
  saw_event_ = true;
  if (payload == "[DONE]") {
    saw_done_ = true;
    done_s_ = now_s;
    return;
  }
  json j = json::parse(payload, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    if (record_.error.empty())
      record_.error = "the stream carried a message that is not JSON: " + payload.substr(0, 120);
    return;
  }
  if (j.contains("error")) {
    if (record_.error.empty()) record_.error = error_message(payload);
    return;
  }
  if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) record_.chunk_times_s.push_back(now_s);
  if (j.contains("usage") && j["usage"].is_object()) {
    const json& u = j["usage"];
    if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer())
      record_.prompt_tokens = u["prompt_tokens"].get<int32_t>();
    if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer())
      record_.completion_tokens = u["completion_tokens"].get<int32_t>();
  }
}

void SseReader::finish(long http_status, double now_s) {
  if (!buffer_.empty()) feed("\n", 1, now_s);
  record_.end_s = saw_done_ ? done_s_ : now_s;
  if (http_status != 200) {
    record_.error = absl::StrCat("HTTP ", http_status, ": ", error_message(raw_));
    return;
  }
  if (!saw_event_ && record_.error.empty()) {
    record_.error = "the server did not answer with an OpenAI event stream (no 'data:' lines)";
    return;
  }
  if (!saw_done_ && record_.error.empty()) record_.error = "the stream ended before 'data: [DONE]'";
}

OpenAiClient::OpenAiClient(std::string base_url, std::string api_key) : api_key_(std::move(api_key)) {
  ensure_curl();
  while (!base_url.empty() && base_url.back() == '/') base_url.pop_back();
  if (absl::EndsWith(base_url, "/v1")) base_url.resize(base_url.size() - 3);
  base_url_ = std::move(base_url);
}

absl::StatusOr<HttpReply> OpenAiClient::get(const std::string& path, long timeout_s) const {
  return post_json(path, /*body=*/"", timeout_s);
}

absl::StatusOr<HttpReply> OpenAiClient::post_json(const std::string& path, const std::string& body,
                                                  long timeout_s) const {
  std::unique_ptr<CURL, void (*)(CURL*)> easy(curl_easy_init(), curl_easy_cleanup);
  HttpReply reply;
  Headers headers;
  if (!api_key_.empty()) headers.add("Authorization: Bearer " + api_key_);
  std::string url = base_url_ + path;
  curl_easy_setopt(easy.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy.get(), CURLOPT_TIMEOUT, timeout_s);
  curl_easy_setopt(easy.get(), CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(easy.get(), CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(easy.get(), CURLOPT_WRITEDATA, &reply.body);
  if (!body.empty()) {
    headers.add("Content-Type: application/json");
    curl_easy_setopt(easy.get(), CURLOPT_COPYPOSTFIELDS, body.c_str());
  }
  curl_easy_setopt(easy.get(), CURLOPT_HTTPHEADER, headers.list);
  CURLcode rc = curl_easy_perform(easy.get());
  if (rc != CURLE_OK) return absl::UnavailableError(absl::StrCat("cannot reach ", url, ": ", curl_easy_strerror(rc)));
  curl_easy_getinfo(easy.get(), CURLINFO_RESPONSE_CODE, &reply.status);
  char* type = nullptr;
  curl_easy_getinfo(easy.get(), CURLINFO_CONTENT_TYPE, &type);
  if (type) reply.content_type = type;
  return reply;
}

std::vector<RequestRecord> OpenAiClient::stream_chat(const std::vector<std::string>& bodies,
                                                     const std::function<void(size_t)>& on_finish,
                                                     const std::function<bool()>& cancelled) const {
  std::unique_ptr<CURLM, CURLMcode (*)(CURLM*)> multi(curl_multi_init(), curl_multi_cleanup);
  std::vector<std::unique_ptr<Stream>> streams;
  std::string url = base_url_ + "/v1/chat/completions";
  for (const std::string& body : bodies) {
    auto s = std::make_unique<Stream>();
    s->reader = std::make_unique<SseReader>(s->record);
    s->body = body;
    s->index = streams.size();
    s->easy = curl_easy_init();
    s->headers.add("Content-Type: application/json");
    s->headers.add("Accept: text/event-stream");
    if (!api_key_.empty()) s->headers.add("Authorization: Bearer " + api_key_);
    curl_easy_setopt(s->easy, CURLOPT_URL, url.c_str());
    curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->easy, CURLOPT_TIMEOUT, 6L * 3600);  // the original's SERVER_HTTP_TIMEOUT
    curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers.list);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body.c_str());
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(s->body.size()));
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_stream_bytes);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s.get());
    curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s.get());
    streams.push_back(std::move(s));
  }
  // Fresh connections for every stream: a reused keep-alive connection would favour some requests.
  curl_multi_setopt(multi.get(), CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
  double release = now_seconds();
  for (auto& s : streams) {
    s->record.start_s = release;
    curl_multi_add_handle(multi.get(), s->easy);
  }
  int running = static_cast<int>(streams.size());
  while (running > 0) {
    curl_multi_perform(multi.get(), &running);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi.get(), &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Stream* s = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&s));
      long status = 0;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
      double t = now_seconds();
      if (msg->data.result != CURLE_OK) {
        s->reader->finish(status ? status : 200, t);
        s->record.error = absl::StrCat("cannot reach ", url, ": ", curl_easy_strerror(msg->data.result));
      } else {
        s->reader->finish(status, t);
      }
      on_finish(s->index);
    }
    if (running > 0) curl_multi_poll(multi.get(), nullptr, 0, 100, nullptr);
    if (running > 0 && cancelled && cancelled()) {
      for (auto& s : streams)
        if (s->record.end_s == 0) {
          s->record.end_s = now_seconds();
          s->record.error = "cancelled";
        }
      break;
    }
  }
  std::vector<RequestRecord> records;
  for (auto& s : streams) {
    curl_multi_remove_handle(multi.get(), s->easy);
    curl_easy_cleanup(s->easy);
    records.push_back(std::move(s->record));
  }
  return records;
}

double parse_kv_usage(const std::string& metrics_text, const std::string& model) {
  static const char* kNames[] = {"bmserver:kv_cache_usage_perc", "vllm:kv_cache_usage_perc",
                                 "vllm:gpu_cache_usage_perc", "sglang:token_usage"};
  double best = -1;
  size_t pos = 0;
  while (pos < metrics_text.size()) {
    size_t end = metrics_text.find('\n', pos);
    if (end == std::string::npos) end = metrics_text.size();
    std::string line = metrics_text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty() || line[0] == '#') continue;
    for (const char* name : kNames) {
      if (!absl::StartsWith(line, name)) continue;
      std::string rest = line.substr(std::string(name).size());
      if (!rest.empty() && rest[0] == '{') {
        size_t close = rest.find('}');
        if (close == std::string::npos) break;
        std::string labels = rest.substr(0, close + 1);
        // Another model's gauge on the same server does not count.
        if (!model.empty() && absl::StrContains(labels, "model_name=") &&
            !absl::StrContains(labels, "model_name=\"" + model + "\""))
          break;
        rest = rest.substr(close + 1);
      } else if (!rest.empty() && rest[0] != ' ') {
        break;  // a longer metric name that starts the same
      }
      double value = std::strtod(rest.c_str(), nullptr);
      best = std::max(best, value);
      break;
    }
  }
  return best;
}

}  // namespace bm::daemon::bench
