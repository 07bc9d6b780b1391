#include "engine/backend/cuda/device_scratch.h"

#include <algorithm>

#include "engine/backend/cuda/cuda_check.h"

namespace bm::engine::cuda {
namespace {

cudaError_t cuda_allocate(void** pointer, size_t bytes) {
  return cudaMalloc(pointer, bytes);
}
cudaError_t cuda_free(void* pointer) {
  return cudaFree(pointer);
}

}  // namespace

DeviceScratch::DeviceScratch() : DeviceScratch(cuda_allocate, cuda_free) {}

DeviceScratch::~DeviceScratch() {
  // Teardown: nothing to report to, and after a fault cudaFree fails harmlessly.
  for (void* old : retired_) free_(old);
  if (data_ != nullptr) free_(data_);
}

cudaError_t DeviceScratch::reserve(int64_t bytes) {
  if (bytes <= size_) return cudaSuccess;
  void* fresh = nullptr;
  const cudaError_t error = allocate_(&fresh, static_cast<size_t>(bytes));
  if (error != cudaSuccess) {
    cudaGetLastError();  // a failed allocation leaves its error as the "last error"; clear it
    return error;
  }
  if (data_ != nullptr) {
    if (pinned_) {
      retired_.push_back(data_);  // a recorded graph may still replay into it
    } else {
      free_(data_);
    }
  }
  data_ = fresh;
  size_ = bytes;
  pinned_ = false;  // no graph has seen the new allocation yet
  return cudaSuccess;
}

void* DeviceScratch::ensure(int64_t bytes, cudaStream_t stream) {
  if (bytes <= size_) return data_;
  if (!BM_CUDA_OK(cudaStreamSynchronize(stream))) return nullptr;
  // Grow geometrically so that a slowly growing batch does not reallocate every step.
  if (!BM_CUDA_OK(reserve(std::max(bytes, size_ * 2)))) return nullptr;
  return data_;
}

}  // namespace bm::engine::cuda
