#include "daemon/openai/metrics.h"

#include "absl/strings/str_cat.h"

namespace bm::daemon::openai {
namespace {

std::vector<double> latency_bounds() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,
          0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0};
}
std::vector<double> token_bounds() {
  return {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000};
}

std::string label_escape(const std::string& v) {
  std::string out;
  for (char c : v)
    out += (c == '"' || c == '\\') ? std::string("\\") + c : c == '\n' ? std::string("\\n") : std::string(1, c);
  return out;
}

void header(std::string& out, const std::string& name, const char* type, const char* help) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}

void Histogram::observe(double value) {
  std::lock_guard<std::mutex> lock(mutex_);
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  counts_[i]++;
  sum_ += value;
  count_++;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    absl::StrAppend(&out, name, "_bucket{", labels, ",le=\"", bounds_[i], "\"} ", cumulative, "\n");
  }
  cumulative += counts_.back();
  absl::StrAppend(&out, name, "_bucket{", labels, ",le=\"+Inf\"} ", cumulative, "\n");
  absl::StrAppend(&out, name, "_sum{", labels, "} ", sum_, "\n", name, "_count{", labels, "} ", count_, "\n");
}

ModelMetrics::ModelMetrics()
    : time_to_first_token_seconds(latency_bounds()),
      inter_token_latency_seconds(latency_bounds()),
      e2e_request_latency_seconds(latency_bounds()),
      request_prompt_tokens(token_bounds()),
      request_generation_tokens(token_bounds()),
      request_params_n({1, 2, 5, 10, 20}),
      request_params_max_tokens(token_bounds()),
      request_max_num_generation_tokens(token_bounds()) {}

void ModelMetrics::count_finished(const std::string& reason) {
  std::lock_guard<std::mutex> lock(finished_mutex);
  request_success_total[reason]++;
}

std::string render_metrics(const std::vector<ModelGauges>& models, const HttpCounters& http) {
  // vLLM's names and labels (vllm: prefix, model_name), so dashboards built for vLLM read us unchanged; where
  // vLLM renamed a metric between versions both names are written. Our extras keep the bmserver: prefix.
  std::string out;
  auto gauge = [&](const std::string& name, const char* help, auto value_of) {
    header(out, name, "gauge", help);
    for (const ModelGauges& m : models)
      absl::StrAppend(&out, name, "{model_name=\"", label_escape(m.model_name), "\"} ", value_of(m), "\n");
  };
  gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
        [](const ModelGauges& m) { return m.num_running; });
  gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
        [](const ModelGauges& m) { return m.num_waiting; });
  gauge("vllm:num_requests_swapped", "Number of requests swapped to CPU (always 0: preemption recomputes).",
        [](const ModelGauges&) { return 0; });
  gauge("vllm:gpu_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage (the CPU backend's too).",
        [](const ModelGauges& m) { return m.kv_cache_usage; });
  gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
        [](const ModelGauges& m) { return m.kv_cache_usage; });
  gauge("vllm:cpu_cache_usage_perc", "CPU swap-space KV-cache usage (always 0: no swap space).",
        [](const ModelGauges&) { return 0; });
  gauge("vllm:gpu_prefix_cache_hit_rate", "Prefix-cache hit rate: cached prompt tokens / prompt tokens queried.",
        [](const ModelGauges& m) {
          if (!m.metrics || m.metrics->prefix_cache_queries_total == 0) return 0.0;
          return static_cast<double>(m.metrics->prefix_cache_hits_total.load()) /
                 static_cast<double>(m.metrics->prefix_cache_queries_total.load());
        });
  gauge("bmserver:kv_cache_capacity_tokens", "KV-cache capacity in tokens.",
        [](const ModelGauges& m) { return m.kv_capacity_tokens; });

  auto counter = [&](const std::string& name, const char* help, auto value_of) {
    header(out, name, "counter", help);
    for (const ModelGauges& m : models)
      if (m.metrics)
        absl::StrAppend(&out, name, "{model_name=\"", label_escape(m.model_name), "\"} ", value_of(m), "\n");
  };
  counter("vllm:num_preemptions_total", "Cumulative number of preemptions from the engine.",
          [](const ModelGauges& m) { return m.num_preemptions; });
  counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.",
          [](const ModelGauges& m) { return m.metrics->prompt_tokens_total.load(); });
  counter("vllm:generation_tokens_total", "Number of generation tokens processed.",
          [](const ModelGauges& m) { return m.metrics->generation_tokens_total.load(); });
  for (const char* prefix : {"vllm:gpu_prefix_cache", "vllm:prefix_cache"}) {
    counter(absl::StrCat(prefix, "_queries_total"), "Prefix-cache queries, in prompt tokens.",
            [](const ModelGauges& m) { return m.metrics->prefix_cache_queries_total.load(); });
    counter(absl::StrCat(prefix, "_hits_total"), "Prefix-cache hits, in prompt tokens.",
            [](const ModelGauges& m) { return m.metrics->prefix_cache_hits_total.load(); });
  }
  counter("bmserver:request_errors_total", "Requests that ended in an error.",
          [](const ModelGauges& m) { return m.metrics->request_errors_total.load(); });
  counter("bmserver:requests_rejected_total", "Requests refused with 503 because the model's queue was full.",
          [](const ModelGauges& m) { return m.metrics->requests_rejected_total.load(); });

  header(out, "vllm:request_success_total", "counter", "Count of successfully processed requests.");
  for (const ModelGauges& m : models) {
    if (!m.metrics) continue;
    auto* metrics = const_cast<ModelMetrics*>(m.metrics);
    std::lock_guard<std::mutex> lock(metrics->finished_mutex);
    for (const auto& [reason, count] : metrics->request_success_total)
      absl::StrAppend(&out, "vllm:request_success_total{finished_reason=\"", reason, "\",model_name=\"",
                      label_escape(m.model_name), "\"} ", count, "\n");
  }
  auto histogram = [&](const std::string& name, const char* help, const Histogram ModelMetrics::*member) {
    header(out, name, "histogram", help);
    for (const ModelGauges& m : models)
      if (m.metrics) (m.metrics->*member).render(out, name, "model_name=\"" + label_escape(m.model_name) + "\"");
  };
  histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
            &ModelMetrics::time_to_first_token_seconds);
  histogram("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.",
            &ModelMetrics::inter_token_latency_seconds);
  histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
            &ModelMetrics::inter_token_latency_seconds);
  histogram("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.",
            &ModelMetrics::e2e_request_latency_seconds);
  histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", &ModelMetrics::request_prompt_tokens);
  histogram("vllm:request_generation_tokens", "Number of generation tokens processed.",
            &ModelMetrics::request_generation_tokens);
  histogram("vllm:request_params_n", "Histogram of the n request parameter.", &ModelMetrics::request_params_n);
  histogram("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.",
            &ModelMetrics::request_params_max_tokens);
  histogram("vllm:request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.",
            &ModelMetrics::request_max_num_generation_tokens);

  header(out, "bmserver:http_open_connections", "gauge", "Open HTTP connections.");
  absl::StrAppend(&out, "bmserver:http_open_connections ", http.open_connections, "\n");
  header(out, "bmserver:http_requests_total", "counter", "HTTP requests received.");
  absl::StrAppend(&out, "bmserver:http_requests_total ", http.requests_total, "\n");
  header(out, "bmserver:http_connections_refused_total", "counter", "Connections refused over the connection limit.");
  absl::StrAppend(&out, "bmserver:http_connections_refused_total ", http.connections_refused, "\n");
  header(out, "bmserver:http_streams_dropped_total", "counter",
         "Streams dropped because the client left too much output unread.");
  absl::StrAppend(&out, "bmserver:http_streams_dropped_total ", http.streams_dropped, "\n");
  return out;
}

}  // namespace bm::daemon::openai
