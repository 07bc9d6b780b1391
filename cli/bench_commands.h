#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cli/global_options.h"

namespace bm::cli {

struct BenchmarkArgs {
  std::string name;  // catalog name or model folder; with endpoint: the name to store results under
  // serve options, as `chat serve` (used when the daemon does not serve the model yet)
  std::string hub;
  std::string local_dir;
  std::string backend = "auto";
  std::vector<int32_t> gpus;
  int32_t max_model_len = 0;
  double gpu_memory_utilization = 0;
  int32_t max_num_seqs = 0;
  uint64_t seed = 2025;
  std::string api_key;  // the served model's key, or the endpoint's
  uint64_t kv_cache_bytes = 0;
  bool enforce_eager = false;
  // the sweep
  std::vector<int32_t> prompt_tokens = {500};
  std::vector<int32_t> completion_tokens = {500};
  std::string endpoint;
  std::string model;
  int32_t max_concurrency = 0;
  bool no_store = false;
  std::string csv_file;
  std::string plot_file;
};

struct BenchmarkQueryArgs {
  std::string model;  // empty: every model
  std::string csv_file;
  std::string plot_file;
};

// `bmserver chat benchmark NAME`: runs the sweep in the daemon with live progress, prints a summary table.
int run_benchmark(const GlobalOptions& options, const BenchmarkArgs& args);
// `bmserver chat benchmark list`: one line per (model, GPU, version, P, C) stored.
int run_benchmark_list(const GlobalOptions& options, const BenchmarkQueryArgs& args);
// `bmserver chat benchmark show NAME`: every stored run of a model.
int run_benchmark_show(const GlobalOptions& options, const BenchmarkQueryArgs& args);
// `bmserver chat benchmark export [NAME]`: CSV (stdout or --csv FILE), or JSON with -o json.
int run_benchmark_export(const GlobalOptions& options, const BenchmarkQueryArgs& args);

}  // namespace bm::cli
