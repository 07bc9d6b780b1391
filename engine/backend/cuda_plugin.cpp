#include "engine/backend/cuda_plugin.h"

#include <dlfcn.h>

#include <filesystem>
#include <map>
#include <mutex>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/plugin_abi.h"
#include "engine/backend/device_info.h"

namespace bm::engine {
namespace {

constexpr char kUnavailablePayload[] = "type.bmserver.dev/engine.BackendUnavailable";

struct Plugin {
  BmCudaCreateBackendFn create = nullptr;
  BmCudaCopyBandwidthFn copy_bandwidth = nullptr;
  BmCudaCreateCommunicatorsFn create_communicators = nullptr;
};

// Loads (once per path) and checks the plugin. Handles are never closed: unloading a CUDA runtime while the
// process lives on is a known source of crashes, and backends created by it keep using its code.
absl::StatusOr<Plugin> load_plugin(const std::string& path) {
  static std::mutex mutex;
  static std::map<std::string, Plugin> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  if (auto found = loaded.find(path); found != loaded.end()) return found->second;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return backend_unavailable(absl::StrCat(
        "the CUDA backend plugin is not installed (looked for ", path,
        "); build with the CUDA toolkit (nvcc) present, or point BMSERVER_CUDA_PLUGIN at libbm_backend_cuda.so"));
  }
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* reason = dlerror();
    return backend_unavailable(absl::StrCat(
        "the CUDA backend plugin ", path, " could not be loaded: ", reason != nullptr ? reason : "unknown dlopen error",
        " (are the CUDA libraries, e.g. libcublasLt, installed?)"));
  }
  auto probe = reinterpret_cast<BmCudaProbeFn>(dlsym(handle, "bm_cuda_plugin_probe"));
  if (probe == nullptr) {
    return backend_unavailable(absl::StrCat(path, " is not a BMServer CUDA plugin (it has no bm_cuda_plugin_probe)"));
  }
  BmCudaProbe result{};
  probe(&result);
  if (result.abi_version != BM_CUDA_PLUGIN_ABI_VERSION) {
    return backend_unavailable(absl::StrCat("the CUDA backend plugin ", path, " speaks plugin ABI ", result.abi_version,
                                            " but this build expects ", BM_CUDA_PLUGIN_ABI_VERSION,
                                            "; install the plugin built with this bmserver"));
  }
  Plugin plugin;
  plugin.create = reinterpret_cast<BmCudaCreateBackendFn>(dlsym(handle, "bm_cuda_create_backend_v1"));
  plugin.copy_bandwidth = reinterpret_cast<BmCudaCopyBandwidthFn>(dlsym(handle, "bm_cuda_measure_copy_bandwidth"));
  plugin.create_communicators =
      reinterpret_cast<BmCudaCreateCommunicatorsFn>(dlsym(handle, "bm_cuda_create_communicators_v1"));
  if (plugin.create == nullptr || plugin.copy_bandwidth == nullptr || plugin.create_communicators == nullptr) {
    return backend_unavailable(absl::StrCat("the CUDA backend plugin ", path, " reports ABI ", result.abi_version,
                                            " but lacks its entry points"));
  }
  loaded.emplace(path, plugin);
  return plugin;
}

absl::Status status_of(int code, const char* message) {
  const std::string text(message);
  switch (code) {
    case kBmCudaOk:
      return absl::OkStatus();
    case kBmCudaAbiMismatch:
    case kBmCudaNoDevice:
    case kBmCudaDriverTooOld:
    case kBmCudaUnsupportedGpu:
      return backend_unavailable(absl::StrCat("the CUDA backend cannot run here: ", text));
    case kBmCudaNcclUnavailable:
      return backend_unavailable(absl::StrCat("tensor parallelism across GPUs needs NCCL: ", text));
    case kBmCudaMixedGpus:
    case kBmCudaInvalidArgument:
      return absl::InvalidArgumentError(text);
    case kBmCudaOutOfMemory:
      return absl::ResourceExhaustedError(absl::StrCat("the CUDA backend ran out of memory: ", text));
    default:
      return absl::InternalError(absl::StrCat("the CUDA backend failed: ", text));
  }
}

}  // namespace

absl::Status backend_unavailable(const std::string& message) {
  absl::Status status = absl::UnimplementedError(message);
  status.SetPayload(kUnavailablePayload, absl::Cord("1"));
  return status;
}

bool is_backend_unavailable(const absl::Status& status) {
  return status.GetPayload(kUnavailablePayload).has_value();
}

absl::StatusOr<std::unique_ptr<Backend>> create_cuda_backend_from(const std::string& plugin_path,
                                                                  int32_t device_index) {
  absl::StatusOr<Plugin> plugin = load_plugin(plugin_path);
  if (!plugin.ok()) return plugin.status();
  BmCudaBackendOptions options{BM_CUDA_PLUGIN_ABI_VERSION, device_index};
  void* created = nullptr;
  char error[512] = {};
  const int code = plugin->create(&options, &created, error, sizeof error);
  if (code != kBmCudaOk) return status_of(code, error);
  if (created == nullptr) return absl::InternalError("the CUDA plugin reported success but returned no backend");
  return std::unique_ptr<Backend>(static_cast<Backend*>(created));
}

absl::StatusOr<std::unique_ptr<Backend>> create_cuda_backend(int32_t device_index) {
  return create_cuda_backend_from(cuda_plugin_path(), device_index);
}

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> create_cuda_communicators_from(
    const std::string& plugin_path, std::span<const int32_t> devices) {
  if (devices.empty()) return absl::InvalidArgumentError("a group of NCCL communicators needs at least one GPU");
  absl::StatusOr<Plugin> plugin = load_plugin(plugin_path);
  if (!plugin.ok()) return plugin.status();
  const std::vector<int> ordinals(devices.begin(), devices.end());
  BmCudaCommunicatorOptions options{BM_CUDA_PLUGIN_ABI_VERSION, static_cast<int>(ordinals.size()), ordinals.data()};
  std::vector<void*> created(ordinals.size(), nullptr);
  char error[512] = {};
  const int code = plugin->create_communicators(&options, created.data(), error, sizeof error);
  if (code != kBmCudaOk) return status_of(code, error);
  std::vector<std::unique_ptr<Communicator>> communicators;
  for (void* one : created) communicators.emplace_back(static_cast<Communicator*>(one));
  for (const auto& one : communicators)
    if (one == nullptr) return absl::InternalError("the CUDA plugin reported success but returned no communicator");
  return communicators;
}

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> create_cuda_communicators(
    std::span<const int32_t> devices) {
  return create_cuda_communicators_from(cuda_plugin_path(), devices);
}

absl::StatusOr<double> measure_cuda_copy_bandwidth(int32_t device_index, int64_t bytes, int32_t iterations) {
  if (bytes <= 0 || iterations <= 0) return absl::InvalidArgumentError("bytes and iterations must be positive");
  absl::StatusOr<Plugin> plugin = load_plugin(cuda_plugin_path());
  if (!plugin.ok()) return plugin.status();
  double gb_per_s = 0.0;
  char error[512] = {};
  const int code =
      plugin->copy_bandwidth(device_index, static_cast<size_t>(bytes), iterations, &gb_per_s, error, sizeof error);
  if (code != kBmCudaOk) return status_of(code, error);
  return gb_per_s;
}

}  // namespace bm::engine
