#include "engine/models/model_loader.h"

#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cpu/cpu_communicator.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/backend/cuda_plugin.h"
#include "engine/model/checkpoint.h"
#include "engine/model/model_config.h"
#include "engine/models/decoder_lm.h"
#include "engine/models/decoder_spec.h"
#include "engine/models/decoder_weights.h"
#include "engine/models/tensor_parallel_lm.h"
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

// Qwen2.5-VL: the vision tower beside the language model (rank 0's, under tensor parallelism).
absl::Status attach_vision_if_any(DecoderLM& model, const DecoderSpec& spec, const Checkpoint& checkpoint,
                                  const std::filesystem::path& model_dir) {
  if (spec.mrope_section.empty()) return absl::OkStatus();
  absl::StatusOr<VisionConfig> vision = load_vision_config(model_dir);
  if (!vision.ok()) return vision.status();
  return model.attach_vision(checkpoint, *vision);
}

// The ranks of a tensor-parallel model, each with its shard of the weights and its own backend and communicator.
absl::StatusOr<std::unique_ptr<CausalLM>> load_tensor_parallel(const DecoderSpec& spec, const Checkpoint& checkpoint,
                                                               const std::filesystem::path& model_dir,
                                                               const LoadOptions& options) {
  const int32_t size = options.tensor_parallel_size;
  absl::StatusOr<DecoderSpec> rank_spec = shard_decoder_spec(spec, size);
  if (!rank_spec.ok()) return rank_spec.status();
  if (options.backend != "cpu")
    return absl::UnimplementedError(
        absl::StrCat("tensor parallelism runs on the cpu backend only for now (its NCCL "
                     "communicator for the ",
                     options.backend, " backend is not built yet); serve with --tensor-parallel-size 1"));
  const int32_t cpus = cpu::available_cpus();
  const int32_t threads = options.num_threads > 0 ? options.num_threads : cpus;
  if (threads < size)
    return absl::InvalidArgumentError(absl::StrCat("tensor-parallel size ", size,
                                                   " needs at least one thread per rank; ", threads,
                                                   options.num_threads > 0 ? " were given" : " CPUs are usable"));
  std::vector<std::unique_ptr<cpu::CpuCommunicator>> group = cpu::CpuCommunicator::create_group(size);
  std::vector<std::unique_ptr<Communicator>> communicators;
  std::vector<std::unique_ptr<DecoderLM>> ranks;
  for (int32_t r = 0; r < size; ++r) {
    LoadOptions rank_options = options;
    rank_options.num_threads = threads / size + (r < threads % size ? 1 : 0);
    absl::StatusOr<std::unique_ptr<Backend>> backend = make_backend(rank_options);
    if (!backend.ok()) return backend.status();
    BM_CHECK((*backend)->runs_collectives(*group[static_cast<size_t>(r)]));
    absl::StatusOr<std::unique_ptr<DecoderWeights>> weights =
        load_decoder_weights(checkpoint, spec, **backend, Shard{r, size});
    if (!weights.ok()) return weights.status();
    absl::StatusOr<std::unique_ptr<DecoderLM>> model =
        DecoderLM::create(*rank_spec, std::move(*backend), std::move(*weights),
                          options.kv_cache_dtype.value_or(default_kv_cache_dtype(options.backend)));
    if (!model.ok()) return model.status();
    (*model)->set_communicator(group[static_cast<size_t>(r)].get());
    if (r == 0)
      if (absl::Status s = attach_vision_if_any(**model, spec, checkpoint, model_dir); !s.ok()) return s;
    ranks.push_back(*std::move(model));
    communicators.push_back(std::move(group[static_cast<size_t>(r)]));
  }
  return std::unique_ptr<CausalLM>(TensorParallelLM::create(std::move(ranks), std::move(communicators)));
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
  if (options.tensor_parallel_size != 1)
    if (absl::StatusOr<DecoderSpec> sharded = shard_decoder_spec(*spec, options.tensor_parallel_size); !sharded.ok())
      return sharded.status();  // before any file is mapped
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::open(model_dir);
  if (!checkpoint.ok()) return checkpoint.status();
  if (options.tensor_parallel_size > 1) return load_tensor_parallel(*spec, **checkpoint, model_dir, options);
  absl::StatusOr<std::unique_ptr<Backend>> backend = make_backend(options);
  if (!backend.ok()) return backend.status();
  absl::StatusOr<std::unique_ptr<DecoderWeights>> weights = load_decoder_weights(**checkpoint, *spec, **backend);
  if (!weights.ok()) return weights.status();
  const DecoderSpec whole = *spec;
  absl::StatusOr<std::unique_ptr<DecoderLM>> model =
      DecoderLM::create(std::move(*spec), std::move(*backend), std::move(*weights),
                        options.kv_cache_dtype.value_or(default_kv_cache_dtype(options.backend)));
  if (!model.ok()) return model.status();
  if (absl::Status s = attach_vision_if_any(**model, whole, **checkpoint, model_dir); !s.ok()) return s;
  return std::unique_ptr<CausalLM>(std::move(*model));
}

}  // namespace bm::engine
