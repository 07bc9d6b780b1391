// A stand-in for libbm_backend_cuda.so with no CUDA in it, so that the engine's plugin loader
// (engine/backend/cuda_plugin.cpp) can be tested on any machine. Built twice: with the current ABI version
// (bm_cuda_create_backend_v1 returns the BmCudaStatus named by the device index, with a sentence) and with
// FAKE_ABI_VERSION set to another version (the loader must refuse it before calling anything else).
#include <cstdio>
#include <cstring>

#include "engine/backend/cuda/plugin_abi.h"

#ifndef FAKE_ABI_VERSION
#define FAKE_ABI_VERSION BM_CUDA_PLUGIN_ABI_VERSION
#endif

extern "C" int bm_cuda_plugin_probe(BmCudaProbe* out) {
  std::memset(out, 0, sizeof *out);
  out->abi_version = FAKE_ABI_VERSION;
  out->device_count = 0;
  return 0;
}

extern "C" int bm_cuda_create_backend_v1(const BmCudaBackendOptions* options, void** backend, char* error,
                                         size_t error_size) {
  *backend = nullptr;
  // Device index k answers status k; kBmCudaOk answers success without a backend (a broken plugin).
  std::snprintf(error, error_size, "fake plugin status %d for device %d", options->device_index, options->device_index);
  return options->device_index;
}

extern "C" int bm_cuda_measure_copy_bandwidth(int device_index, size_t bytes, int iterations, double* gb_per_s,
                                              char* error, size_t error_size) {
  *gb_per_s = 0.0;
  std::snprintf(error, error_size, "no GPU in the fake plugin");
  return kBmCudaNoDevice;
}

extern "C" int bm_cuda_create_communicators_v1(const BmCudaCommunicatorOptions* options, void** communicators,
                                               char* error, size_t error_size) {
  // The first device index k answers status k, as bm_cuda_create_backend_v1; kBmCudaOk answers success without
  // communicators (a broken plugin).
  const int code = options->device_indices[0];
  for (int r = 0; r < options->count; ++r) communicators[r] = nullptr;
  std::snprintf(error, error_size, "fake plugin status %d for a group of %d", code, options->count);
  return code;
}
