#pragma once
// Every CUDA runtime and cuBLASLt call inside the plugin goes through these. A failure after the backend was
// created is a driver fault or a bug (shapes are checked before any launch), not bad input: it aborts with the
// call, file and line, and the daemon restarts the engine. The C ABI entry points report failures as status
// values instead and never use these.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

namespace bm::engine::cuda {

[[noreturn]] void cuda_failed(cudaError_t error, const char* call, const char* file, int line);
[[noreturn]] void cublas_failed(cublasStatus_t status, const char* call, const char* file, int line);

}  // namespace bm::engine::cuda

#define BM_CUDA_CHECK(call)                                                           \
  do {                                                                                \
    const cudaError_t bm_cuda_error_ = (call);                                        \
    if (bm_cuda_error_ != cudaSuccess)                                                \
      ::bm::engine::cuda::cuda_failed(bm_cuda_error_, #call, __FILE__, __LINE__);     \
  } while (0)

#define BM_CUBLAS_CHECK(call)                                                         \
  do {                                                                                \
    const cublasStatus_t bm_cublas_status_ = (call);                                  \
    if (bm_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                   \
      ::bm::engine::cuda::cublas_failed(bm_cublas_status_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch-configuration errors show up here, faults inside the kernel at the next
// synchronising call.
#define BM_CUDA_CHECK_LAUNCH() BM_CUDA_CHECK(cudaGetLastError())
