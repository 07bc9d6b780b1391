// Version and device probe of the CUDA plugin: the first entry point of the C ABI in plugin_abi.h.
#include <cstdio>
#include <cstring>

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "engine/backend/cuda/plugin_abi.h"

extern "C" int bm_cuda_plugin_probe(BmCudaProbe* out) {
  std::memset(out, 0, sizeof *out);
  out->abi_version = BM_CUDA_PLUGIN_ABI_VERSION;
  cudaRuntimeGetVersion(&out->runtime_version);
  cudaDriverGetVersion(&out->driver_version);
  int nccl = 0;
  if (ncclGetVersion(&nccl) == ncclSuccess) out->nccl_version = nccl;
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
