#include "engine/models/model_loader.h"

#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/backend/cuda_plugin.h"
#include "engine/model/checkpoint.h"
#include "engine/model/model_config.h"
#include "engine/models/decoder_lm.h"
#include "engine/models/decoder_spec.h"
#include "engine/models/decoder_weights.h"
#include "engine/models/vision_encoder.h"

namespace bm::engine {
namespace {

absl::StatusOr<std::unique_ptr<Backend>> make_backend(const LoadOptions& options) {
  if (options.backend == "cpu") {
    const int32_t cpus = cpu::available_cpus();
    if (options.num_threads < 0 || options.num_threads > cpus) {
      return absl::InvalidArgumentError(absl::StrCat("the CPU backend cannot run ", options.num_threads,
                                                     " threads: this process may use ", cpus,
                                                     " CPUs (its affinity mask); give 1 to ", cpus, ", or 0 for all"));
    }
    std::string path_name = options.cpu_gemm_path;
    const char* from_env = std::getenv("BMSERVER_CPU_GEMM");
    if (path_name.empty()) path_name = from_env != nullptr && *from_env != '\0' ? from_env : "auto";
    absl::StatusOr<cpu::GemmPath> path = cpu::parse_gemm_path(path_name);
    if (!path.ok()) return path.status();
    return create_cpu_backend(CpuBackendOptions{options.num_threads, *path});
  }
  if (options.backend == "cuda") return create_cuda_backend(options.device_index);
  return absl::UnimplementedError(absl::StrCat("backend '", options.backend, "' is not available (cpu or cuda)"));
}

}  // namespace

DType default_kv_cache_dtype(const std::string& backend) {
  (void)backend;
  return DType::kBF16;
}

absl::StatusOr<std::unique_ptr<CausalLM>> load_causal_lm(const std::filesystem::path& model_dir,
                                                         const LoadOptions& options) {
  absl::StatusOr<ModelConfig> config = read_model_config(model_dir);
  if (!config.ok()) return config.status();
  absl::StatusOr<DecoderSpec> spec = make_decoder_spec(*config, options.backend);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::open(model_dir);
  if (!checkpoint.ok()) return checkpoint.status();
  absl::StatusOr<std::unique_ptr<Backend>> backend = make_backend(options);
  if (!backend.ok()) return backend.status();
  absl::StatusOr<std::unique_ptr<DecoderWeights>> weights = load_decoder_weights(**checkpoint, *spec, **backend);
  if (!weights.ok()) return weights.status();
  const std::vector<int32_t> spec_mrope = spec->mrope_section;
  absl::StatusOr<std::unique_ptr<DecoderLM>> model =
      DecoderLM::create(std::move(*spec), std::move(*backend), std::move(*weights),
                        options.kv_cache_dtype.value_or(default_kv_cache_dtype(options.backend)));
  if (!model.ok()) return model.status();
  if (!spec_mrope.empty()) {
    // Qwen2.5-VL: the vision tower beside the language model.
    absl::StatusOr<VisionConfig> vision = load_vision_config(model_dir);
    if (!vision.ok()) return vision.status();
    if (absl::Status s = (*model)->attach_vision(**checkpoint, *vision); !s.ok()) return s;
  }
  return std::unique_ptr<CausalLM>(std::move(*model));
}

}  // namespace bm::engine
