#include "daemon/bench/metrics.h"

#include <gtest/gtest.h>

namespace bm::daemon::bench {
namespace {

// Two requests released at t = 10 s, with hand-picked chunk arrival times.
std::vector<RequestRecord> recorded() {
  RequestRecord a;
  a.start_s = 10.0;
  a.chunk_times_s = {10.1, 10.2, 10.4, 10.5};  // TTFT 100 ms; gaps 100, 200, 100 ms
  a.end_s = 10.5;
  a.prompt_tokens = 8;
  a.completion_tokens = 4;
  RequestRecord b;
  b.start_s = 10.0;
  b.chunk_times_s = {10.3, 10.6, 10.9, 11.2};  // TTFT 300 ms; gaps 300 × 3
  b.end_s = 11.2;
  b.prompt_tokens = 8;
  b.completion_tokens = 4;
  return {a, b};
}

TEST(PercentileTest, InterpolatesLinearlyBetweenRanks) {
  std::vector<double> v = {4, 1, 3, 2};  // sorted 1 2 3 4
  EXPECT_DOUBLE_EQ(percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(percentile(v, 50), 2.5);
  EXPECT_DOUBLE_EQ(percentile(v, 90), 3.7);
  EXPECT_DOUBLE_EQ(percentile(v, 100), 4);
  EXPECT_DOUBLE_EQ(percentile({}, 50), 0);
  EXPECT_DOUBLE_EQ(percentile({7}, 99), 7);
}

TEST(RunMetricsTest, FollowsTheOriginalAndVllmDefinitions) {
  RunMetrics m = compute_run_metrics(recorded(), /*duration_s=*/1.25, /*requested_completion_tokens=*/4);
  EXPECT_EQ(m.num_completed, 2);
  EXPECT_EQ(m.num_errors, 0);
  EXPECT_DOUBLE_EQ(m.request_throughput, 2 / 1.25);
  EXPECT_DOUBLE_EQ(m.request_throughput_min, 2 / 1.25 * 60);
  EXPECT_DOUBLE_EQ(m.output_throughput, 8 / 1.25);
  EXPECT_DOUBLE_EQ(m.total_token_throughput, 24 / 1.25);
  EXPECT_NEAR(m.ttft_ms.mean, 200, 1e-9);
  EXPECT_NEAR(m.ttft_ms.p50, 200, 1e-9);
  EXPECT_NEAR(m.e2el_ms.mean, (500 + 1200) / 2.0, 1e-9);
  EXPECT_NEAR(m.mean_latency_s, 0.85, 1e-12);
  // vLLM: (latency − TTFT) / (tokens − 1): a 400/3, b 900/3.
  EXPECT_NEAR(m.tpot_ms.mean, (400.0 / 3 + 900.0 / 3) / 2, 1e-9);
  // The original: (latency − TTFT) / C requested: a 100, b 225.
  EXPECT_NEAR(m.mean_tpot_original_ms, (100 + 225) / 2.0, 1e-9);
  // ITL pooled over both requests: 100 200 100 300 300 300.
  EXPECT_NEAR(m.itl_ms.mean, 1300.0 / 6, 1e-9);
  EXPECT_NEAR(m.itl_ms.p50, 250, 1e-9);
  EXPECT_NEAR(m.itl_ms.p99, 300, 1e-9);
}

TEST(RunMetricsTest, CountsFailedRequestsAsErrorsOnly) {
  std::vector<RequestRecord> records = recorded();
  RequestRecord failed;
  failed.start_s = 10;
  failed.end_s = 10.01;
  failed.error = "HTTP 500: boom";
  records.push_back(failed);
  RequestRecord empty;  // no error text but no tokens either
  empty.start_s = 10;
  empty.end_s = 10.02;
  records.push_back(empty);
  RunMetrics m = compute_run_metrics(records, 1.25, 4);
  EXPECT_EQ(m.num_completed, 2);
  EXPECT_EQ(m.num_errors, 2);
  EXPECT_EQ(m.first_error, "HTTP 500: boom");
  EXPECT_DOUBLE_EQ(m.request_throughput, 2 / 1.25);
  EXPECT_NEAR(m.ttft_ms.mean, 200, 1e-9);
}

TEST(RunMetricsTest, SingleTokenRequestsHaveNoTpot) {
  RequestRecord r;
  r.start_s = 0;
  r.chunk_times_s = {0.05};
  r.end_s = 0.06;
  r.prompt_tokens = 3;
  r.completion_tokens = 1;
  RunMetrics m = compute_run_metrics({r}, 0.06, 1);
  EXPECT_DOUBLE_EQ(m.tpot_ms.mean, 0);
  EXPECT_DOUBLE_EQ(m.itl_ms.mean, 0);
  EXPECT_NEAR(m.ttft_ms.p99, 50, 1e-9);
}

}  // namespace
}  // namespace bm::daemon::bench
