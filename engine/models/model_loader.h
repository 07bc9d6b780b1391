#pragma once
// Loads a Hugging Face model folder (config.json + safetensors) onto a backend as a CausalLM.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/dtype.h"
#include "engine/models/causal_lm.h"

namespace bm::engine {

struct LoadOptions {
  std::string backend = "cpu";  // "cpu" or "cuda" (the dlopen'ed plugin, engine/backend/cuda_plugin.h)
  int32_t num_threads = 0;      // CPU backend threads; 0: one per logical core
  int32_t device_index = 0;     // CUDA backend: the CUDA runtime's device ordinal (after CUDA_VISIBLE_DEVICES)
  // Unset: default_kv_cache_dtype(backend). F32 on the CPU: the reference path stays exact against float32
  // transformers, and CPU memory is not the bottleneck for the small models a CPU serves. BF16 on a GPU: it
  // halves the cache (twice the tokens in the same memory) and the tensor-core prefill kernel reads BF16.
  std::optional<DType> kv_cache_dtype;
  // CPU GEMM instruction path (engine/backend/cpu/gemm_path.h): empty means $BMSERVER_CPU_GEMM, else "auto".
  std::string cpu_gemm_path;
};

// F32 for "cpu", BF16 for any other backend.
DType default_kv_cache_dtype(const std::string& backend);

// Everything is checked before anything is allocated: the architecture and quantization are supported, every
// tensor the config implies exists with that shape, the files are intact. Errors name the file or tensor.
absl::StatusOr<std::unique_ptr<CausalLM>> load_causal_lm(const std::filesystem::path& model_dir,
                                                         const LoadOptions& options);

}  // namespace bm::engine
