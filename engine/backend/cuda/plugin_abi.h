#pragma once
// The C ABI between the engine and the CUDA backend plugin (libbm_backend_cuda.so). The engine dlopens the
// plugin, so nothing outside engine/backend/cuda links a CUDA library or needs a driver to start.
#include <stddef.h>

#define BM_CUDA_PLUGIN_ABI_VERSION 1

extern "C" {

struct BmCudaProbe {
  int abi_version;
  int device_count;          // -1 when the runtime could not be initialised (see error)
  int runtime_version;       // cudaRuntimeGetVersion, e.g. 13000
  int driver_version;        // cudaDriverGetVersion (the CUDA API the driver supports), 0 without a driver
  int nccl_version;          // ncclGetVersion, e.g. 22703
  size_t cublaslt_version;   // cublasLtGetVersion, e.g. 130100
  char error[256];           // why devices could not be used; empty when fine
};

// Fills `out`; returns 0. Never aborts, whatever the driver state.
typedef int (*BmCudaProbeFn)(BmCudaProbe* out);
int bm_cuda_plugin_probe(BmCudaProbe* out);
}
