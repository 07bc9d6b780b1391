#pragma once
// The engine's side of the CUDA plugin (engine/backend/cuda/plugin_abi.h): dlopen the plugin, check its ABI
// version, and create a backend or measure copy bandwidth through it. No CUDA headers or libraries here, so
// every engine binary starts on a machine without a driver; the plugin stays loaded for the life of the process.
//
// Errors: a plugin that is missing, does not load, speaks another ABI, finds no usable GPU (no device, compute
// capability < 8.0, driver too old) is UnimplementedError — "the CUDA backend is not available here", which the
// daemon's `auto` backend treats as "fall back to the CPU". Out of device memory is ResourceExhaustedError,
// other CUDA failures InternalError. Each message says what was looked for and what to do.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/backend/communicator.h"

namespace bm::engine {

// The plugin at cuda_plugin_path() (device_info.h), on CUDA device `device_index`.
absl::StatusOr<std::unique_ptr<Backend>> create_cuda_backend(int32_t device_index);
// The plugin at an explicit path (tests, tools).
absl::StatusOr<std::unique_ptr<Backend>> create_cuda_backend_from(const std::string& plugin_path, int32_t device_index);

// Tensor parallelism across GPUs: one NCCL communicator per device of `devices` (CUDA ordinals, distinct, all the
// same GPU model), rank r on devices[r], each for the CUDA backend created on that device. Errors: no plugin or no
// usable GPU, or libnccl cannot be loaded: backend_unavailable (a sentence saying which); GPUs of different models:
// InvalidArgumentError; NCCL failing to initialise: InternalError.
absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> create_cuda_communicators(std::span<const int32_t> devices);
absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> create_cuda_communicators_from(
    const std::string& plugin_path, std::span<const int32_t> devices);

// The backend cannot start on this machine (no plugin, no usable GPU or driver): UnimplementedError carrying a
// payload that survives being passed up through the loader, so callers can tell it from other Unimplemented
// errors (an unsupported quantization, say) and fall back to the CPU.
absl::Status backend_unavailable(const std::string& message);
bool is_backend_unavailable(const absl::Status& status);

// Device-to-device copy bandwidth of a GPU in GB/s (bytes read + written per second, median of `iterations`
// copies of `bytes`): the ceiling a memory-bound decode step is compared against.
absl::StatusOr<double> measure_cuda_copy_bandwidth(int32_t device_index, int64_t bytes = int64_t{1} << 30,
                                                   int32_t iterations = 20);

}  // namespace bm::engine
