#pragma once
// Prometheus metrics of the OpenAI API under vLLM's own names (vllm: prefix, model_name label) so its dashboards
// work; metrics vLLM does not have are bmserver:. Counters and histograms are updated by the request handlers; gauges
// are read from the engines at scrape time.
#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace bm::daemon::openai {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> counts_;  // one per bound, plus +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct ModelMetrics {
  ModelMetrics();
  std::atomic<uint64_t> prompt_tokens_total{0};
  std::atomic<uint64_t> generation_tokens_total{0};
  std::mutex finished_mutex;
  std::map<std::string, uint64_t> request_success_total;  // by finished_reason
  std::atomic<uint64_t> request_errors_total{0};
  std::atomic<uint64_t> requests_rejected_total{0};     // 503: the model's queue was full
  std::atomic<uint64_t> prefix_cache_queries_total{0};  // prompt tokens looked up in the prefix cache
  std::atomic<uint64_t> prefix_cache_hits_total{0};     // of those, tokens found there
  Histogram time_to_first_token_seconds;
  Histogram inter_token_latency_seconds;
  Histogram e2e_request_latency_seconds;
  Histogram request_prompt_tokens;
  Histogram request_generation_tokens;
  Histogram request_params_n;                   // choices a request asks for
  Histogram request_params_max_tokens;          // its max_tokens
  Histogram request_max_num_generation_tokens;  // max_tokens x n
  void count_finished(const std::string& reason);
};

// Gauges of one served model at scrape time.
struct ModelGauges {
  std::string model_name;
  int64_t num_running = 0;
  int64_t num_waiting = 0;
  double kv_cache_usage = 0;  // 0..1
  int64_t num_preemptions = 0;
  int64_t kv_capacity_tokens = 0;
  int64_t num_kv_blocks = 0;
  const ModelMetrics* metrics = nullptr;
};

// The HTTP server's own counters at scrape time.
struct HttpCounters {
  int64_t open_connections = 0;
  int64_t requests_total = 0;
  int64_t connections_refused = 0;
  int64_t streams_dropped = 0;
};

std::string render_metrics(const std::vector<ModelGauges>& models, const HttpCounters& http);

}  // namespace bm::daemon::openai
