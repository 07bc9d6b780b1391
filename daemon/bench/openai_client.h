#pragma once
// The benchmark's HTTP client for any OpenAI-compatible server (ours on loopback, vLLM, SGLang): plain calls
// (GET /v1/models, POST /tokenize, GET /metrics) and a burst of streamed chat completions released together,
// each timed per SSE message. libcurl's multi interface drives every stream from one thread, so 256
// concurrent streams cost 256 sockets, not 256 threads.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/bench/metrics.h"

namespace bm::daemon::bench {

// Seconds on the steady clock every timestamp of a run uses.
double now_seconds();

struct HttpReply {
  long status = 0;
  std::string body;
  std::string content_type;
};

class OpenAiClient {
 public:
  // base_url: scheme://host:port (a trailing /v1 is accepted and dropped).
  OpenAiClient(std::string base_url, std::string api_key);

  const std::string& base_url() const { return base_url_; }
  // A failed connection is an error; any HTTP status is a reply.
  absl::StatusOr<HttpReply> get(const std::string& path, long timeout_s = 30) const;
  absl::StatusOr<HttpReply> post_json(const std::string& path, const std::string& body, long timeout_s = 120) const;

  // POSTs every body to /v1/chat/completions at once (stream: true) and waits for all. on_finish(i) runs on
  // the calling thread as request i ends. Each record's start is the release time.
  // cancelled() is asked every 100 ms; when true, the open streams are dropped and marked as cancelled.
  std::vector<RequestRecord> stream_chat(const std::vector<std::string>& bodies,
                                         const std::function<void(size_t)>& on_finish,
                                         const std::function<bool()>& cancelled = nullptr) const;

 private:
  std::string base_url_;
  std::string api_key_;
};

// The KV-cache usage (0..1) a Prometheus /metrics text reports for `model` (bmserver:kv_cache_usage_perc,
// vllm:kv_cache_usage_perc, vllm:gpu_cache_usage_perc or sglang:token_usage); -1 when none is there.
double parse_kv_usage(const std::string& metrics_text, const std::string& model);

// One SSE stream being read: feeds bytes, fills a RequestRecord. Public for the tests.
class SseReader {
 public:
  explicit SseReader(RequestRecord& record) : record_(record) {}
  void feed(const char* data, size_t size, double now_s);
  // The stream closed: flushes a last event and sets end_s (the [DONE] time when one came).
  void finish(long http_status, double now_s);
  bool saw_done() const { return saw_done_; }

 private:
  void on_data(const std::string& payload, double now_s);
  RequestRecord& record_;
  std::string buffer_;
  std::string raw_;  // the body when it is not a stream, for the error message
  bool saw_done_ = false;
  bool saw_event_ = false;
  double done_s_ = 0;
};

}  // namespace bm::daemon::bench
