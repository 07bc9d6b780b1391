// The harness's first step on a GPU machine (run-gpu-checks.sh runs it before any stage), and a ctest here: does
// the CUDA plugin load, what does it report, and can it create a backend on device 0? Prints one line per fact.
// Exit status:
//     0  a backend was created (a GPU is usable)
//   100  no GPU here and none required (gpu_required.h): the plugin loaded, the device check said so; fine on CI
//     1  the plugin could not be loaded or probed (anywhere), or a GPU is present/required but no backend could
//        be created; the reason is printed
#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/backend/cuda_plugin.h"
#include "engine/backend/device_info.h"
#include "tests/gpu/gpu_required.h"

int main() {
  using bm::engine::gpu_tests::gpu_required;
  const std::string path = bm::engine::cuda_plugin_path();
  const bm::engine::DeviceInfo info = bm::engine::detect_devices();
  std::printf("plugin path:      %s\n", path.c_str());
  std::printf("plugin:           %s\n", info.cuda_plugin.c_str());
  std::printf("driver:           %s (CUDA API %s)\n", info.driver_version.c_str(),
              info.cuda_driver_api_version.c_str());
  std::printf("CUDA runtime:     %s\n", info.cuda_runtime_version.c_str());
  std::printf("cuBLASLt:         %s\n", info.cublas_version.c_str());
  std::printf("NCCL:             %s\n", info.nccl_version.c_str());
  std::printf("GPUs (NVML):      %zu%s%s\n", info.gpus.size(), info.gpu_status.empty() ? "" : "; ",
              info.gpu_status.c_str());
  for (const bm::engine::GpuInfo& gpu : info.gpus) {
    std::printf("  %d: %s, compute capability %s, %.1f GiB\n", gpu.index, gpu.name.c_str(),
                gpu.compute_capability.c_str(), static_cast<double>(gpu.memory_total_bytes) / (1 << 30));
  }
  std::printf("GPU required:     %s\n", gpu_required() ? "yes" : "no");
  // detect_devices() stores the path itself only when the plugin loaded, was probed and speaks this build's ABI.
  if (info.cuda_plugin != path) {
    std::printf("FAIL: the plugin cannot be used: %s\n", info.cuda_plugin.c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<bm::engine::Backend>> backend = bm::engine::create_cuda_backend(0);
  if (backend.ok()) {
    const bm::engine::MemoryInfo memory = (*backend)->memory_info();
    std::printf("backend:          created on device 0 (%.1f GiB free of %.1f GiB)\n",
                static_cast<double>(memory.free_bytes) / (1 << 30),
                static_cast<double>(memory.total_bytes) / (1 << 30));
    return 0;
  }
  const std::string reason = backend.status().ToString();
  if (!gpu_required() && bm::engine::is_backend_unavailable(backend.status())) {
    std::printf("SKIP: no usable GPU here (%s)\n", reason.c_str());
    return 100;
  }
  std::printf("FAIL: a GPU is present (or BMSERVER_REQUIRE_GPU=1) but no CUDA backend could be created: %s\n",
              reason.c_str());
  return 1;
}
