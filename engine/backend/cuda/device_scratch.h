#pragma once
// Device scratch that grows on demand (contents are not preserved across growth), for CudaBackend's per-op
// workspaces (BF16 activations, attention partials, prefill tiles, quantized GEMM scratch).
//
// Graphs: a recorded CUDA graph holds the raw address of every scratch it used. Growing a scratch after that
// (an eager prefill needing more attention partials than the decode shapes did) must not free the old allocation
// while a graph could still replay into it. So CudaBackend pins every scratch when a capture begins; growing a
// pinned scratch *retires* the old allocation (kept until this object is destroyed, i.e. with the backend, after
// its graphs) instead of freeing it. Growth is geometric, so what is retired stays below the final size.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

namespace bm::engine::cuda {

class DeviceScratch {
 public:
  // The allocator, replaceable so that the retire logic is tested without a GPU (tests/gpu/cuda_check_test.cpp).
  using AllocateFn = cudaError_t (*)(void** pointer, size_t bytes);
  using FreeFn = cudaError_t (*)(void* pointer);
  DeviceScratch();
  DeviceScratch(AllocateFn allocate, FreeFn free) : allocate_(allocate), free_(free) {}
  ~DeviceScratch();
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;

  // Non-aborting allocation of at least `bytes` (creation path, and ensure's growth); returns the CUDA error.
  cudaError_t reserve(int64_t bytes);
  // Grows to at least `bytes`, waiting for `stream` first so no queued kernel still uses the old memory. Null
  // after recording the failure (cuda_check.h) when that sync or the allocation fails.
  void* ensure(int64_t bytes, cudaStream_t stream);
  // A graph may hold the current allocation from now on: the next growth retires it instead of freeing it.
  void pin() { pinned_ = true; }
  void* data() const { return data_; }
  int64_t size() const { return size_; }
  size_t num_retired() const { return retired_.size(); }

 private:
  AllocateFn allocate_;
  FreeFn free_;
  void* data_ = nullptr;
  int64_t size_ = 0;
  bool pinned_ = false;
  std::vector<void*> retired_;  // earlier allocations recorded graphs may point to
};

}  // namespace bm::engine::cuda
