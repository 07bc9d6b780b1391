// Version and device probe of the CUDA plugin: the first entry point of the C ABI in plugin_abi.h.
#include <dlfcn.h>

#include <cstdio>
#include <cstring>

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "engine/backend/cuda/plugin_abi.h"

namespace {

// NCCL is needed only for tensor parallelism, which does not exist yet; the probe asks it for its version and
// nothing else. So it is opened here, at the point of use, instead of being linked: a missing or broken libnccl
// must not stop the whole plugin from loading (a NEEDED entry would make the engine's dlopen fail). The handle is
// kept open for the process, as the plugin's own is. Returns 0 when NCCL cannot be loaded; the engine turns that
// into a sentence (device_info.cpp).
int nccl_version() {
  static const int version = [] {
    void* handle = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) handle = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) return 0;
    // ncclResult_t ncclGetVersion(int*): ncclResult_t is a C enum, an int in the ABI; ncclSuccess is 0.
    using GetVersion = int (*)(int*);
    auto get_version = reinterpret_cast<GetVersion>(dlsym(handle, "ncclGetVersion"));
    int v = 0;
    if (get_version == nullptr || get_version(&v) != 0) return 0;
    return v;
  }();
  return version;
}

}  // namespace

extern "C" int bm_cuda_plugin_probe(BmCudaProbe* out) {
  std::memset(out, 0, sizeof *out);
  out->abi_version = BM_CUDA_PLUGIN_ABI_VERSION;
  cudaRuntimeGetVersion(&out->runtime_version);
  cudaDriverGetVersion(&out->driver_version);
  out->nccl_version = nccl_version();
  out->cublaslt_version = cublasLtGetVersion();
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    out->device_count = -1;
    std::snprintf(out->error, sizeof out->error, "CUDA runtime: %s (%s)", cudaGetErrorString(err),
                  cudaGetErrorName(err));
    return 0;
  }
  out->device_count = count;
  return 0;
}
