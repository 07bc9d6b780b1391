#pragma once
// The arithmetic of one benchmark run, on recorded timestamps (seconds on one steady clock), with the
// definitions of the original bmserver and of `vllm bench serve` (reference/anchors-engines.md §D).
#include <cstdint>
#include <string>
#include <vector>

namespace bm::daemon::bench {

// What the client saw of one streamed request.
struct RequestRecord {
  double start_s = 0;
  std::vector<double> chunk_times_s;  // arrival of each SSE message carrying choices (the first one is TTFT)
  double end_s = 0;                   // the stream ended ([DONE] or close)
  int32_t prompt_tokens = 0;          // from the usage chunk
  int32_t completion_tokens = 0;
  std::string error;  // empty: succeeded

  bool ok() const { return error.empty() && !chunk_times_s.empty(); }
};

struct Distribution {
  double mean = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
};

// Percentile with linear interpolation between closest ranks (numpy's default); empty input gives 0.
double percentile(std::vector<double> values, double q);
Distribution distribution(const std::vector<double>& values);

struct RunMetrics {
  int32_t num_completed = 0;
  int32_t num_errors = 0;
  double duration_s = 0;
  double request_throughput = 0;      // completed / duration (req/s)
  double request_throughput_min = 0;  // the original's: completed / duration × 60
  double output_throughput = 0;       // Σ completion tokens / duration
  double total_token_throughput = 0;  // Σ (prompt + completion) / duration
  double mean_latency_s = 0;
  double mean_tpot_original_ms = 0;  // mean of (latency − TTFT) / C_requested
  Distribution ttft_ms;
  Distribution tpot_ms;  // per request (latency − TTFT) / (tokens − 1), requests with > 1 token
  Distribution itl_ms;   // pooled gaps between consecutive chunks
  Distribution e2el_ms;
  std::string first_error;
};

// duration_s: from the moment all requests were released to the end of the last one.
RunMetrics compute_run_metrics(const std::vector<RequestRecord>& records, double duration_s,
                               int32_t requested_completion_tokens);

}  // namespace bm::daemon::bench
