// Version and device probe of the CUDA plugin: the first entry point of the C ABI in plugin_abi.h.
#include <cstdio>
#include <cstring>

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "engine/backend/cuda/nccl_api.h"
#include "engine/backend/cuda/plugin_abi.h"

namespace {

// NCCL is needed only for tensor parallelism across GPUs; it is opened at the point of use (nccl_api.h) instead
// of being linked: a missing or broken libnccl must not stop the whole plugin from loading (a NEEDED entry would
// make the engine's dlopen fail). Returns 0 when NCCL cannot be loaded; the engine turns that into a sentence
// (device_info.cpp).
int nccl_version() {
  const bm::engine::cuda::NcclApi* api = bm::engine::cuda::nccl_api();
  int v = 0;
  if (api == nullptr || api->get_version(&v) != bm::engine::cuda::kNcclSuccess) return 0;
  return v;
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
