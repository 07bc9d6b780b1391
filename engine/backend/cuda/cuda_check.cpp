#include "engine/backend/cuda/cuda_check.h"

#include <cstdio>
#include <cstdlib>

namespace bm::engine::cuda {

void cuda_failed(cudaError_t error, const char* call, const char* file, int line) {
  std::fprintf(stderr, "bmserver: CUDA error %s (%s) in %s at %s:%d\n", cudaGetErrorName(error),
               cudaGetErrorString(error), call, file, line);
  std::abort();
}

void cublas_failed(cublasStatus_t status, const char* call, const char* file, int line) {
  std::fprintf(stderr, "bmserver: cuBLASLt error %s (%s) in %s at %s:%d\n", cublasLtGetStatusName(status),
               cublasLtGetStatusString(status), call, file, line);
  std::abort();
}

}  // namespace bm::engine::cuda
