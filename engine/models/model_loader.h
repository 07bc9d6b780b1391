#pragma once
// Loads a Hugging Face model folder (config.json + safetensors) onto a backend as a CausalLM.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/dtype.h"
#include "engine/models/causal_lm.h"

namespace bm::engine {

struct LoadOptions {
  std::string backend = "cpu";  // only "cpu" so far
  int32_t num_threads = 0;      // CPU backend threads; 0: one per logical core
  // F32 on the CPU: the reference path stays exact against float32 transformers, and CPU memory is not the
  // bottleneck for the small models a CPU serves. BF16 halves the cache (what a GPU backend will use).
  DType kv_cache_dtype = DType::kF32;
};

// Everything is checked before anything is allocated: the architecture and quantization are supported, every
// tensor the config implies exists with that shape, the files are intact. Errors name the file or tensor.
absl::StatusOr<std::unique_ptr<CausalLM>> load_causal_lm(const std::filesystem::path& model_dir,
                                                         const LoadOptions& options);

}  // namespace bm::engine
