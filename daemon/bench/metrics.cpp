#include "daemon/bench/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace bm::daemon::bench {

double percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  double rank = q / 100.0 * static_cast<double>(values.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(rank));
  size_t hi = std::min(lo + 1, values.size() - 1);
  double frac = rank - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

Distribution distribution(const std::vector<double>& values) {
  Distribution d;
  if (values.empty()) return d;
  d.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  d.p50 = percentile(values, 50);
  d.p90 = percentile(values, 90);
  d.p99 = percentile(values, 99);
  return d;
}

RunMetrics compute_run_metrics(const std::vector<RequestRecord>& records, double duration_s,
                               int32_t requested_completion_tokens) {
  RunMetrics m;
  m.duration_s = duration_s;
  std::vector<double> ttft_ms, tpot_ms, itl_ms, e2el_ms, tpot_original_ms;
  double sum_completion = 0, sum_prompt = 0;
  for (const RequestRecord& r : records) {
    if (!r.ok()) {
      ++m.num_errors;
      if (m.first_error.empty()) m.first_error = r.error.empty() ? "the stream carried no tokens" : r.error;
      continue;
    }
    ++m.num_completed;
    double ttft = r.chunk_times_s.front() - r.start_s;
    double latency = r.end_s - r.start_s;
    ttft_ms.push_back(ttft * 1000);
    e2el_ms.push_back(latency * 1000);
    if (requested_completion_tokens > 0)
      tpot_original_ms.push_back((latency - ttft) * 1000 / requested_completion_tokens);
    if (r.completion_tokens > 1) tpot_ms.push_back((latency - ttft) * 1000 / (r.completion_tokens - 1));
    for (size_t i = 1; i < r.chunk_times_s.size(); ++i)
      itl_ms.push_back((r.chunk_times_s[i] - r.chunk_times_s[i - 1]) * 1000);
    sum_completion += r.completion_tokens;
    sum_prompt += r.prompt_tokens;
  }
  if (duration_s > 0) {
    m.request_throughput = m.num_completed / duration_s;
    m.request_throughput_min = m.request_throughput * 60;
    m.output_throughput = sum_completion / duration_s;
    m.total_token_throughput = (sum_prompt + sum_completion) / duration_s;
  }
  m.ttft_ms = distribution(ttft_ms);
  m.tpot_ms = distribution(tpot_ms);
  m.itl_ms = distribution(itl_ms);
  m.e2el_ms = distribution(e2el_ms);
  m.mean_latency_s = m.e2el_ms.mean / 1000;
  m.mean_tpot_original_ms = distribution(tpot_original_ms).mean;
  return m;
}

}  // namespace bm::daemon::bench
