// The C entry points that create a backend and measure copy bandwidth (plugin_abi.h). They never abort: every
// failure becomes a BmCudaStatus and a sentence for the engine to show.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/nccl_communicator.h"
#include "engine/backend/cuda/plugin_abi.h"

namespace {

int report(int status, const std::string& message, char* error, size_t error_size) {
  if (error != nullptr && error_size > 0) std::snprintf(error, error_size, "%s", message.c_str());
  return status;
}

std::string version_text(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::string describe(cudaError_t error) {
  return std::string(cudaGetErrorName(error)) + " (" + cudaGetErrorString(error) + ")";
}

// Driver, device and compute capability checks shared by both entry points.
int check_device(int device_index, char* error, size_t error_size) {
  int driver = 0;
  int runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  if (driver == 0) {
    return report(kBmCudaNoDevice, "no NVIDIA driver is installed (the CUDA driver library could not be loaded)", error,
                  error_size);
  }
  // CUDA's minor-version compatibility lets a runtime run on any driver of the same major version.
  if (driver / 1000 < runtime / 1000) {
    return report(kBmCudaDriverTooOld,
                  "the NVIDIA driver supports CUDA " + version_text(driver) + " but the plugin was built with CUDA " +
                      version_text(runtime) + "; install a driver for CUDA " + std::to_string(runtime / 1000) +
                      ".x or newer",
                  error, error_size);
  }
  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
    cudaGetLastError();
    if (e == cudaErrorInsufficientDriver) {
      return report(kBmCudaDriverTooOld, "the NVIDIA driver is too old for CUDA " + version_text(runtime), error,
                    error_size);
    }
    if (e == cudaErrorNoDevice) return report(kBmCudaNoDevice, "no CUDA-capable GPU is visible", error, error_size);
    return report(kBmCudaNoDevice, "the CUDA runtime cannot see a usable GPU: " + describe(e), error, error_size);
  }
  if (count == 0) return report(kBmCudaNoDevice, "no CUDA-capable GPU is visible", error, error_size);
  if (device_index < 0 || device_index >= count) {
    return report(
        kBmCudaNoDevice,
        "CUDA device " + std::to_string(device_index) + " does not exist (" + std::to_string(count) + " visible)",
        error, error_size);
  }
  cudaDeviceProp prop{};
  if (cudaError_t e = cudaGetDeviceProperties(&prop, device_index); e != cudaSuccess) {
    cudaGetLastError();
    return report(kBmCudaError, "cannot query CUDA device " + std::to_string(device_index) + ": " + describe(e), error,
                  error_size);
  }
  if (prop.major < 8) {
    return report(kBmCudaUnsupportedGpu,
                  std::string(prop.name) + " has compute capability " + std::to_string(prop.major) + "." +
                      std::to_string(prop.minor) +
                      "; the CUDA backend needs 8.0 or newer (bf16 tensor cores: A100, RTX 30xx, L4/L40, H100 …)",
                  error, error_size);
  }
  return kBmCudaOk;
}

}  // namespace

extern "C" int bm_cuda_create_backend_v1(const BmCudaBackendOptions* options, void** backend, char* error,
                                         size_t error_size) {
  if (options == nullptr || backend == nullptr) {
    return report(kBmCudaError, "bm_cuda_create_backend_v1 called without options or result", error, error_size);
  }
  *backend = nullptr;
  if (options->abi_version != BM_CUDA_PLUGIN_ABI_VERSION) {
    return report(kBmCudaAbiMismatch,
                  "the engine speaks plugin ABI " + std::to_string(options->abi_version) + ", this plugin " +
                      std::to_string(BM_CUDA_PLUGIN_ABI_VERSION),
                  error, error_size);
  }
  if (int status = check_device(options->device_index, error, error_size); status != kBmCudaOk) return status;
  try {
    std::unique_ptr<bm::engine::cuda::CudaBackend> created;
    std::string message;
    const int status = bm::engine::cuda::CudaBackend::create(options->device_index, &created, &message);
    if (status != kBmCudaOk) return report(status, message, error, error_size);
    *backend = static_cast<bm::engine::Backend*>(created.release());
    return kBmCudaOk;
  } catch (const std::bad_alloc&) {
    return report(kBmCudaOutOfMemory, "out of host memory while creating the CUDA backend", error, error_size);
  } catch (const std::exception& e) {
    return report(kBmCudaError, std::string("creating the CUDA backend failed: ") + e.what(), error, error_size);
  }
}

extern "C" int bm_cuda_create_communicators_v1(const BmCudaCommunicatorOptions* options, void** communicators,
                                               char* error, size_t error_size) {
  if (options == nullptr || communicators == nullptr || options->device_indices == nullptr || options->count < 1) {
    return report(kBmCudaError, "bm_cuda_create_communicators_v1 needs options, devices and a result array", error,
                  error_size);
  }
  if (options->abi_version != BM_CUDA_PLUGIN_ABI_VERSION) {
    return report(kBmCudaAbiMismatch,
                  "the engine speaks plugin ABI " + std::to_string(options->abi_version) + ", this plugin " +
                      std::to_string(BM_CUDA_PLUGIN_ABI_VERSION),
                  error, error_size);
  }
  const std::vector<int> devices(options->device_indices, options->device_indices + options->count);
  if (std::set<int>(devices.begin(), devices.end()).size() != devices.size()) {
    return report(kBmCudaInvalidArgument,
                  "a tensor-parallel group needs distinct GPUs (one rank per GPU); a device was given twice", error,
                  error_size);
  }
  // Every device usable on its own (driver, ordinal, compute capability) and all of one model: the ranks run the
  // same step in lock step, so the slowest GPU sets the pace, and the sharding gives each the same share of
  // memory — a mixed group wastes the bigger GPUs and its timings mislead. Compared here on the CUDA ordinals the
  // group will use (NVML's order in device_info may differ from CUDA's under CUDA_VISIBLE_DEVICES).
  std::string first_model;
  for (size_t r = 0; r < devices.size(); ++r) {
    if (int status = check_device(devices[r], error, error_size); status != kBmCudaOk) return status;
    cudaDeviceProp prop{};
    if (cudaError_t e = cudaGetDeviceProperties(&prop, devices[r]); e != cudaSuccess) {
      cudaGetLastError();
      return report(kBmCudaError, "cannot query CUDA device " + std::to_string(devices[r]) + ": " + describe(e),
                    error, error_size);
    }
    const std::string model = std::string(prop.name) + " (compute capability " + std::to_string(prop.major) + "." +
                              std::to_string(prop.minor) + ")";
    if (r == 0) {
      first_model = model;
    } else if (model != first_model) {
      return report(kBmCudaMixedGpus,
                    "tensor parallelism needs GPUs of one model, but GPU " + std::to_string(devices[0]) + " is a " +
                        first_model + " and GPU " + std::to_string(devices[r]) + " a " + model +
                        "; choose identical GPUs with --gpus",
                    error, error_size);
    }
  }
  std::string why;
  const bm::engine::cuda::NcclApi* api = bm::engine::cuda::nccl_api(&why);
  if (api == nullptr) return report(kBmCudaNcclUnavailable, why, error, error_size);
  try {
    std::string failure;
    std::shared_ptr<bm::engine::cuda::NcclGroup> group = bm::engine::cuda::NcclGroup::create(*api, devices, &failure);
    if (group == nullptr) return report(kBmCudaError, failure, error, error_size);
    std::vector<std::unique_ptr<bm::engine::Communicator>> made;
    for (int r = 0; r < options->count; ++r) made.push_back(std::make_unique<bm::engine::cuda::NcclCommunicator>(group, r));
    for (int r = 0; r < options->count; ++r) communicators[r] = made[static_cast<size_t>(r)].release();
    return kBmCudaOk;
  } catch (const std::bad_alloc&) {
    return report(kBmCudaOutOfMemory, "out of host memory while creating the NCCL communicators", error, error_size);
  } catch (const std::exception& e) {
    return report(kBmCudaError, std::string("creating the NCCL communicators failed: ") + e.what(), error,
                  error_size);
  }
}

extern "C" int bm_cuda_measure_copy_bandwidth(int device_index, size_t bytes, int iterations, double* gb_per_s,
                                              char* error, size_t error_size) {
  if (gb_per_s == nullptr || bytes == 0 || iterations <= 0) {
    return report(kBmCudaError, "bm_cuda_measure_copy_bandwidth needs a result pointer, bytes > 0, iterations > 0",
                  error, error_size);
  }
  *gb_per_s = 0.0;
  if (int status = check_device(device_index, error, error_size); status != kBmCudaOk) return status;
  void* src = nullptr;
  void* dst = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  std::string failure;
  int status = kBmCudaOk;
  auto step = [&](cudaError_t e, const char* what) {
    if (e == cudaSuccess || status != kBmCudaOk) return status == kBmCudaOk;
    cudaGetLastError();
    status = e == cudaErrorMemoryAllocation ? kBmCudaOutOfMemory : kBmCudaError;
    failure = std::string(what) + " failed: " + describe(e);
    return false;
  };
  std::vector<float> times;
  if (step(cudaSetDevice(device_index), "cudaSetDevice") && step(cudaMalloc(&src, bytes), "cudaMalloc") &&
      step(cudaMalloc(&dst, bytes), "cudaMalloc") &&
      step(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate") &&
      step(cudaEventCreate(&start), "cudaEventCreate") && step(cudaEventCreate(&stop), "cudaEventCreate") &&
      step(cudaMemsetAsync(src, 1, bytes, stream), "cudaMemsetAsync") &&
      step(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream), "warm-up copy")) {
    for (int i = 0; i < iterations; ++i) {
      float ms = 0.0f;
      if (!step(cudaEventRecord(start, stream), "cudaEventRecord") ||
          !step(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync") ||
          !step(cudaEventRecord(stop, stream), "cudaEventRecord") ||
          !step(cudaEventSynchronize(stop), "cudaEventSynchronize") ||
          !step(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime")) {
        break;
      }
      times.push_back(ms);
    }
  }
  if (stop != nullptr) cudaEventDestroy(stop);
  if (start != nullptr) cudaEventDestroy(start);
  if (stream != nullptr) cudaStreamDestroy(stream);
  if (dst != nullptr) cudaFree(dst);
  if (src != nullptr) cudaFree(src);
  if (status != kBmCudaOk) return report(status, failure, error, error_size);
  std::sort(times.begin(), times.end());
  const double median_ms = times[times.size() / 2];
  if (median_ms <= 0.0) return report(kBmCudaError, "the timed copies took no measurable time", error, error_size);
  // A device-to-device copy reads and writes every byte.
  *gb_per_s = 2.0 * static_cast<double>(bytes) / (median_ms * 1e-3) / 1e9;
  return kBmCudaOk;
}
