#pragma once
// One `bmserver chat benchmark`: checks the input and the results store, finds what to drive (a model the
// daemon serves, serving it first if needed, or any OpenAI endpoint), sweeps every (P, C) over its
// concurrency levels with exact-length prompts, reports each run as it ends, and stores all runs at once.
#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bmserver/v1/benchmarks.pb.h"

namespace bm::daemon::serving {
class EngineManager;
}

namespace bm::daemon::bench {

class OpenAiClient;

using EventSink = std::function<void(const bmserver::v1::BenchmarkEvent&)>;

// What the sweep drives and what it already knows about it.
struct BenchmarkTarget {
  std::string base_url;
  std::string api_key;
  std::string model;               // id sent in requests
  int64_t kv_capacity_tokens = 0;  // 0: unknown (an endpoint)
  int32_t max_num_seqs = 0;
  int32_t max_model_len = 0;           // 0: unknown
  int32_t max_concurrency = 0;         // an endpoint's --max-concurrency; 0 with no KV figure: probe
  bmserver::v1::BenchmarkResult base;  // environment, model and settings fields of every row
};

struct SweepPlan {
  std::vector<int32_t> prompt_tokens;
  std::vector<int32_t> completion_tokens;
  uint64_t seed = 2025;
  // The image workload: each request's user message carries this many synthetic PNGs of width × height ahead of
  // its text (0: text only). P still counts the whole prompt, the images' tokens included.
  int32_t images_per_prompt = 0;
  int32_t image_width = 0;
  int32_t image_height = 0;
};

// Probing an endpoint stops after the first level with an error or with a p50 TPOT over this many times the
// single-request one.
inline constexpr double kProbeTpotBlowUp = 4.0;

// Runs every level of every pair against `target`; an error that makes the numbers meaningless (the server
// broke, a prompt cannot be built, a cancel) stops it with a sentence.
absl::StatusOr<std::vector<bmserver::v1::BenchmarkResult>> run_sweep(const BenchmarkTarget& target,
                                                                     const SweepPlan& plan, const EventSink& emit,
                                                                     const std::function<bool()>& cancelled);

class BenchmarkRunner {
 public:
  BenchmarkRunner(serving::EngineManager* engines, std::function<std::string()> http_url, std::string state_dir)
      : engines_(engines), http_url_(std::move(http_url)), state_dir_(std::move(state_dir)) {}

  absl::Status run(const bmserver::v1::RunBenchmarkRequest& request, const EventSink& emit,
                   const std::function<bool()>& cancelled);
  absl::StatusOr<bmserver::v1::ListBenchmarksResponse> list(const bmserver::v1::ListBenchmarksRequest& request);

 private:
  absl::Status run_served(const bmserver::v1::RunBenchmarkRequest& request, const SweepPlan& plan,
                          const EventSink& emit, const std::function<bool()>& cancelled,
                          std::vector<bmserver::v1::BenchmarkResult>& results);
  absl::Status run_endpoint(const bmserver::v1::RunBenchmarkRequest& request, const SweepPlan& plan,
                            const EventSink& emit, const std::function<bool()>& cancelled,
                            std::vector<bmserver::v1::BenchmarkResult>& results);

  serving::EngineManager* engines_;
  std::function<std::string()> http_url_;
  std::string state_dir_;
  std::atomic<bool> busy_{false};
};

}  // namespace bm::daemon::bench
