#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cli/global_options.h"

namespace bm::cli {

struct ServeArgs {
  std::string name;
  std::string hub;
  std::string local_dir;
  std::string backend = "auto";
  std::vector<int32_t> gpus;
  int32_t max_model_len = 0;
  double gpu_memory_utilization = 0;
  int32_t max_num_seqs = 0;
  uint64_t seed = 2025;
  std::string api_key;
  uint64_t kv_cache_bytes = 0;
  bool enforce_eager = false;
};

// `bmserver chat serve`: loads a model in the daemon with progress, returns once it is ready.
int run_serve(const GlobalOptions& options, const ServeArgs& args);
// `bmserver chat ps`: the served models.
int run_ps(const GlobalOptions& options);
// `bmserver chat stop NAME`: unloads a served model.
int run_stop(const GlobalOptions& options, const std::string& name);

}  // namespace bm::cli
