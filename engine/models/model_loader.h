#pragma once
// Loads a Hugging Face model folder (config.json + safetensors) onto a backend as a CausalLM.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/dtype.h"
#include "engine/models/causal_lm.h"

namespace bm::engine {

struct LoadOptions {
  std::string backend = "cpu";  // "cpu" or "cuda" (the dlopen'ed plugin, engine/backend/cuda_plugin.h)
  int32_t num_threads = 0;      // CPU backend threads; 0: one per CPU of the affinity mask
  int32_t device_index = 0;     // CUDA backend: the CUDA runtime's device ordinal (after CUDA_VISIBLE_DEVICES)
  // Unset: default_kv_cache_dtype(backend), BF16 everywhere (as vLLM's CPU and GPU builds): it halves the cache,
  // so twice the tokens fit in the same memory, and halves what decode attention reads per token. F32 stays
  // available on the CPU, where the reference comparisons with float32 transformers ask for it explicitly.
  std::optional<DType> kv_cache_dtype;
  // CPU GEMM instruction path (engine/backend/cpu/gemm_path.h): empty means $BMSERVER_CPU_GEMM, else "auto".
  std::string cpu_gemm_path;
  // Tensor parallelism (docs/tensor-parallel.md): ranks the model is split over. On the CPU backend they are
  // threads of this process sharing num_threads (at least one each). On the CUDA backend one rank per GPU,
  // NCCL between them: rank r on devices[r] (empty: devices 0 .. size-1; device_index is then not used).
  int32_t tensor_parallel_size = 1;
  std::vector<int32_t> devices;
  // Fuse each layer's q/k/v and gate/up projections into one matrix each at load (LayerWeights): one GEMM instead
  // of three and two, the same outputs. false loads them apart (the layout before issue 21): the tests that check
  // both give the same logits, and the op counts bm_backend_ops_bench compares.
  bool fuse_projections = true;
};

// BF16 for every backend (the argument stays so a backend may differ again).
DType default_kv_cache_dtype(const std::string& backend);

// Everything is checked before anything is allocated: the architecture and quantization are supported, every
// tensor the config implies exists with that shape, the files are intact. Errors name the file or tensor.
absl::StatusOr<std::unique_ptr<CausalLM>> load_causal_lm(const std::filesystem::path& model_dir,
                                                         const LoadOptions& options);

}  // namespace bm::engine
