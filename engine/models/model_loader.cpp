#include "engine/models/model_loader.h"

#include <cstdlib>
#include <string_view>
#include <vector>

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

// CPUs [first, first + count) of the affinity mask to pin a CPU backend's threads to: only when the model's threads
// (every rank's together) take the whole mask, so that two models given fewer threads each are not piled onto the
// same CPUs, and not when BMSERVER_CPU_PIN=0 (docs/engine-backend.md, "Threads").
std::vector<int32_t> cpus_to_pin(int32_t model_threads, int32_t first, int32_t count) {
  const char* env = std::getenv("BMSERVER_CPU_PIN");
  if (env != nullptr && std::string_view(env) == "0") return {};
  const std::vector<int32_t> cpus = cpu::affinity_cpus();
  if (model_threads != static_cast<int32_t>(cpus.size()) || first < 0 || first + count > model_threads) return {};
  return std::vector<int32_t>(cpus.begin() + first, cpus.begin() + first + count);
}

absl::StatusOr<std::unique_ptr<Backend>> make_backend(const LoadOptions& options, std::vector<int32_t> pin_cpus = {}) {
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
    return create_cpu_backend(CpuBackendOptions{options.num_threads, *path, std::move(pin_cpus)});
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

// One rank of a tensor-parallel model: its backend, its shard of the weights, its communicator.
absl::StatusOr<std::unique_ptr<DecoderLM>> load_rank(const DecoderSpec& spec, const DecoderSpec& rank_spec,
                                                     const Checkpoint& checkpoint,
                                                     const std::filesystem::path& model_dir,
                                                     const LoadOptions& options, std::unique_ptr<Backend> backend,
                                                     Communicator& communicator) {
  const int32_t r = communicator.rank();
  if (!backend->runs_collectives(communicator))
    return absl::InternalError(absl::StrCat("the ", std::string(backend->name()), " backend of rank ", r,
                                            " cannot run collectives over a '", std::string(communicator.kind()),
                                            "' communicator"));
  absl::StatusOr<std::unique_ptr<DecoderWeights>> weights =
      load_decoder_weights(checkpoint, spec, *backend, Shard{r, communicator.size()}, options.fuse_projections);
  if (!weights.ok()) return weights.status();
  absl::StatusOr<std::unique_ptr<DecoderLM>> model =
      DecoderLM::create(rank_spec, std::move(backend), std::move(*weights),
                        options.kv_cache_dtype.value_or(default_kv_cache_dtype(options.backend)));
  if (!model.ok()) return model.status();
  (*model)->set_communicator(&communicator);
  if (r == 0)
    if (absl::Status s = attach_vision_if_any(**model, spec, checkpoint, model_dir); !s.ok()) return s;
  return model;
}

// The GPUs of a CUDA tensor-parallel group: LoadOptions::devices, or 0 .. size-1.
absl::StatusOr<std::vector<int32_t>> tensor_parallel_devices(const LoadOptions& options) {
  const int32_t size = options.tensor_parallel_size;
  if (options.devices.empty()) {
    std::vector<int32_t> devices(static_cast<size_t>(size));
    for (int32_t r = 0; r < size; ++r) devices[static_cast<size_t>(r)] = r;
    return devices;
  }
  if (static_cast<int32_t>(options.devices.size()) != size)
    return absl::InvalidArgumentError(absl::StrCat("tensor-parallel size ", size, " needs one GPU per rank, but ",
                                                   options.devices.size(), " GPUs were given"));
  return options.devices;
}

// The ranks of a tensor-parallel model, each with its shard of the weights and its own backend and communicator.
// CPU: CpuCommunicator ranks sharing the threads. CUDA: one backend per GPU and NCCL communicators
// (create_cuda_communicators; it refuses GPUs of different models), rank 0 on the first GPU.
absl::StatusOr<std::unique_ptr<CausalLM>> load_tensor_parallel(const DecoderSpec& spec, const Checkpoint& checkpoint,
                                                               const std::filesystem::path& model_dir,
                                                               const LoadOptions& options) {
  const int32_t size = options.tensor_parallel_size;
  absl::StatusOr<DecoderSpec> rank_spec = shard_decoder_spec(spec, size);
  if (!rank_spec.ok()) return rank_spec.status();
  std::vector<std::unique_ptr<Communicator>> communicators;
  std::vector<std::unique_ptr<DecoderLM>> ranks;
  if (options.backend == "cuda") {
    absl::StatusOr<std::vector<int32_t>> devices = tensor_parallel_devices(options);
    if (!devices.ok()) return devices.status();
    // The communicators first: they check every device and that the GPUs are of one model before any weight
    // is copied.
    absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> group = create_cuda_communicators(*devices);
    if (!group.ok()) return group.status();
    communicators = *std::move(group);
    for (int32_t r = 0; r < size; ++r) {
      absl::StatusOr<std::unique_ptr<Backend>> backend = create_cuda_backend((*devices)[static_cast<size_t>(r)]);
      if (!backend.ok()) return backend.status();
      absl::StatusOr<std::unique_ptr<DecoderLM>> model =
          load_rank(spec, *rank_spec, checkpoint, model_dir, options, *std::move(backend),
                    *communicators[static_cast<size_t>(r)]);
      if (!model.ok()) return model.status();
      ranks.push_back(*std::move(model));
    }
    return std::unique_ptr<CausalLM>(TensorParallelLM::create(std::move(ranks), std::move(communicators)));
  }
  if (options.backend != "cpu")
    return absl::UnimplementedError(absl::StrCat("tensor parallelism runs on the cpu and cuda backends, not '",
                                                 options.backend, "'"));
  const int32_t cpus = cpu::available_cpus();
  const int32_t threads = options.num_threads > 0 ? options.num_threads : cpus;
  if (threads < size)
    return absl::InvalidArgumentError(absl::StrCat("tensor-parallel size ", size,
                                                   " needs at least one thread per rank; ", threads,
                                                   options.num_threads > 0 ? " were given" : " CPUs are usable"));
  std::vector<std::unique_ptr<cpu::CpuCommunicator>> group = cpu::CpuCommunicator::create_group(size);
  for (auto& one : group) communicators.push_back(std::move(one));
  int32_t first_cpu = 0;  // each rank pins its threads to its own slice of the mask
  for (int32_t r = 0; r < size; ++r) {
    LoadOptions rank_options = options;
    rank_options.num_threads = threads / size + (r < threads % size ? 1 : 0);
    absl::StatusOr<std::unique_ptr<Backend>> backend =
        make_backend(rank_options, cpus_to_pin(threads, first_cpu, rank_options.num_threads));
    first_cpu += rank_options.num_threads;
    if (!backend.ok()) return backend.status();
    absl::StatusOr<std::unique_ptr<DecoderLM>> model = load_rank(
        spec, *rank_spec, checkpoint, model_dir, options, *std::move(backend), *communicators[static_cast<size_t>(r)]);
    if (!model.ok()) return model.status();
    ranks.push_back(*std::move(model));
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
  const int32_t threads = options.num_threads > 0 ? options.num_threads : cpu::available_cpus();
  absl::StatusOr<std::unique_ptr<Backend>> backend = make_backend(options, cpus_to_pin(threads, 0, threads));
  if (!backend.ok()) return backend.status();
  absl::StatusOr<std::unique_ptr<DecoderWeights>> weights = load_decoder_weights(**checkpoint, *spec, **backend, Shard{}, options.fuse_projections);
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
