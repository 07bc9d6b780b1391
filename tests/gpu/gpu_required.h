#pragma once
// Whether the GPU tests may skip. On a machine without an NVIDIA GPU (CI, the build machine) every GPU test skips
// with its reason. Where a GPU is present a skip is a harness failure: a plugin that cannot be loaded, a driver
// mismatch or a test that cannot create its backend would otherwise leave every test skipped and the stage green.
//   BMSERVER_REQUIRE_GPU=1  skips are failures (run-gpu-checks.sh sets it on the GPU machine)
//   BMSERVER_REQUIRE_GPU=0  skips are skips (for a deliberate run without the GPU, e.g. a broken-driver repro)
//   unset                   skips are failures exactly when the NVIDIA driver lists a GPU (/proc/driver/nvidia)
#include <cstdlib>
#include <filesystem>
#include <string>

namespace bm::engine::gpu_tests {

// The kernel driver's view, without loading any NVIDIA library: one directory per GPU under
// /proc/driver/nvidia/gpus, or the device node of the first GPU.
inline bool nvidia_gpu_visible() {
  std::error_code ec;
  const std::filesystem::path gpus("/proc/driver/nvidia/gpus");
  if (std::filesystem::is_directory(gpus, ec) && !std::filesystem::is_empty(gpus, ec)) return true;
  return std::filesystem::exists("/dev/nvidia0", ec);
}

inline bool gpu_required() {
  const char* value = std::getenv("BMSERVER_REQUIRE_GPU");
  if (value != nullptr && std::string(value) == "1") return true;
  if (value != nullptr && std::string(value) == "0") return false;
  return nvidia_gpu_visible();
}

}  // namespace bm::engine::gpu_tests

// Use instead of GTEST_SKIP() in tests/gpu: skips without a GPU, fails (with the same reason) where one is required.
#define BM_GPU_SKIP_OR_FAIL(reason)                                                                          \
  do {                                                                                                       \
    if (::bm::engine::gpu_tests::gpu_required()) {                                                           \
      GTEST_FAIL() << "a GPU is present (or BMSERVER_REQUIRE_GPU=1) but this test cannot run: " << (reason); \
    }                                                                                                        \
    GTEST_SKIP() << (reason);                                                                                \
  } while (0)
