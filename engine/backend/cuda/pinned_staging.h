#pragma once
// Page-locked (cudaHostAlloc) host staging for CudaBackend's copies: an upload arena that step inputs are copied
// through, and a read-back buffer that step outputs land in. A copy from or to pageable memory makes the CUDA
// runtime stage the bytes through a pinned buffer of its own (a host memcpy and, for uploads, a wait before the
// call returns); from pinned memory it is one DMA that the stream runs in order.
//
// Uploads are asynchronous once the source is pinned: the host must not overwrite a region until the copy that
// reads it has run. The arena therefore only hands out fresh regions (a bump pointer) and starts over at settle(),
// which CudaBackend calls after each stream synchronisation (copy_to_host, synchronize): by then every copy
// queued before has run. A step that uploads more than is left gets nullptr and copies from its pageable source
// as before; settle() then grows the arena to what the last round asked for (never while a capture is in
// progress: copies, and so settle(), are refused then). Uploads larger than kMaxStagedUpload (weights) always go
// pageable, so the pinned memory stays small.
//
// The allocator is replaceable so that the arena's logic is tested without a GPU (tests/gpu/pinned_staging_test.cpp).
#include <cuda_runtime_api.h>

#include <cstdint>

namespace bm::engine::cuda {

class PinnedStaging {
 public:
  static constexpr int64_t kMinArenaBytes = int64_t{64} << 10;
  static constexpr int64_t kMaxArenaBytes = int64_t{8} << 20;
  static constexpr int64_t kMaxStagedUpload = int64_t{2} << 20;
  static constexpr int64_t kMaxReadbackBytes = int64_t{16} << 20;

  using AllocateFn = cudaError_t (*)(void** pointer, size_t bytes);
  using FreeFn = cudaError_t (*)(void* pointer);
  PinnedStaging();  // cudaHostAlloc / cudaFreeHost
  PinnedStaging(AllocateFn allocate, FreeFn free) : allocate_(allocate), free_(free) {}
  ~PinnedStaging();
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;

  // A region of `bytes` of the upload arena that nothing else is handed until settle(); nullptr when it does not
  // fit (the caller copies from its pageable source).
  void* upload_region(int64_t bytes);
  // Every copy queued so far has run (the stream was synchronised): the arena starts over, grown first to what
  // the round since the last settle asked for (up to kMaxArenaBytes). The error of a failed growth (the arena is
  // then empty and uploads go pageable until a later settle succeeds).
  cudaError_t settle();
  // A read-back buffer of at least `bytes` (at most kMaxReadbackBytes), grown as needed; call only while no copy
  // into it is queued (CudaBackend synchronises after each read-back). Sets *data to nullptr on failure, or when
  // bytes exceeds the limit (the caller copies into its pageable destination).
  cudaError_t readback(int64_t bytes, void** data);

  int64_t arena_bytes() const { return arena_size_; }
  int64_t readback_bytes() const { return readback_size_; }

 private:
  cudaError_t replace(void** data, int64_t* size, int64_t bytes);

  AllocateFn allocate_;
  FreeFn free_;
  void* arena_ = nullptr;
  int64_t arena_size_ = 0;
  int64_t arena_used_ = 0;
  int64_t arena_wanted_ = 0;  // bytes asked of the arena since the last settle (staged or not)
  void* readback_ = nullptr;
  int64_t readback_size_ = 0;
};

}  // namespace bm::engine::cuda
