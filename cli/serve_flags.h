#pragma once
// The serve settings as the CLI takes them: one struct for `chat serve` and `chat benchmark` (which serves the
// model when the daemon does not yet), filled by one add_serve_flags() in main.cpp and turned into the one proto
// message (ServeOptions) here. The daemon validates that message in one place (serve_settings_from_proto).
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace bmserver::v1 {
class ServeOptions;
}

namespace bm::cli {

struct ServeFlags {
  std::string hub;  // hf | ms; also the original's leading positional `hf` / `ms`
  std::string local_dir;
  std::string backend = "auto";
  std::vector<int32_t> gpus;
  int32_t max_model_len = 0;          // 0: the model's, clipped to what fits
  double gpu_memory_utilization = 0;  // 0: the daemon's default (0.9)
  int32_t max_num_seqs = 0;           // 0: the daemon's default (256)
  uint64_t seed = 2025;               // the original's default
  std::string api_key;
  uint64_t kv_cache_bytes = 0;
  bool enforce_eager = false;
  int32_t threads = 0;                  // 0: not given (every CPU of the daemon's affinity mask)
  std::string kv_cache_dtype = "auto";  // auto | bfloat16 | float32
  int32_t tensor_parallel_size = 0;     // 0: not given (1)
  // Media (vLLM's flags, checked by the daemon): JSON objects as typed, a folder, a comma list of hosts.
  std::string limit_mm_per_prompt;
  std::string mm_processor_kwargs;
  std::string allowed_local_media_path;  // made absolute here: the daemon does not share our working directory
  std::string allowed_media_domains;
  std::string extra_params;  // the original's --extra-params: vLLM engine arguments (cli/extra_params.h)
};

// Fills `out` from the flags, then applies --extra-params on top (they came last on the original's vLLM command
// line, so they win). A bad --extra-params leaves `out` untouched and says which argument and why.
absl::Status fill_serve_options(const ServeFlags& flags, bmserver::v1::ServeOptions& out);

}  // namespace bm::cli
