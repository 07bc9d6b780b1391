#include "engine/backend/cuda/pinned_staging.h"

#include <algorithm>
#include <bit>

#include "common/check.h"

namespace bm::engine::cuda {
namespace {

// Regions start on 256-byte boundaries, as cudaMalloc's do: a DMA from an aligned source is the fast path.
constexpr int64_t kAlignment = 256;

int64_t round_up(int64_t bytes) {
  return (bytes + kAlignment - 1) / kAlignment * kAlignment;
}

cudaError_t host_alloc(void** pointer, size_t bytes) {
  // Default flags: portable across this process's contexts is not needed (one device per backend), and
  // write-combined memory would make the host memcpy out of the read-back buffer slow.
  return cudaHostAlloc(pointer, bytes, cudaHostAllocDefault);
}

// Geometric growth, so that a slowly growing need reallocates a few times only.
int64_t grown_size(int64_t bytes, int64_t floor) {
  return static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(std::max(bytes, floor))));
}

}  // namespace

PinnedStaging::PinnedStaging() : allocate_(host_alloc), free_(cudaFreeHost) {}

PinnedStaging::~PinnedStaging() {
  // Unchecked on purpose: this runs with the backend, after its stream is synchronised and destroyed; at process
  // exit the runtime may already be unloading (nothing left to free), and after a device fault cudaFreeHost
  // returns the sticky error, recorded already.
  for (void* pointer : {arena_, readback_})
    if (pointer != nullptr) static_cast<void>(free_(pointer));
}

cudaError_t PinnedStaging::replace(void** data, int64_t* size, int64_t bytes) {
  if (*data != nullptr) {
    const cudaError_t freed = free_(*data);
    *data = nullptr;
    *size = 0;
    if (freed != cudaSuccess) return freed;
  }
  void* fresh = nullptr;
  if (const cudaError_t e = allocate_(&fresh, static_cast<size_t>(bytes)); e != cudaSuccess) return e;
  *data = fresh;
  *size = bytes;
  return cudaSuccess;
}

void* PinnedStaging::upload_region(int64_t bytes) {
  BM_CHECK(bytes >= 0);
  if (bytes > kMaxStagedUpload) return nullptr;
  const int64_t rounded = round_up(bytes);
  arena_wanted_ += rounded;
  if (arena_used_ + rounded > arena_size_) return nullptr;
  void* region = static_cast<char*>(arena_) + arena_used_;
  arena_used_ += rounded;
  return region;
}

cudaError_t PinnedStaging::settle() {
  arena_used_ = 0;
  const int64_t wanted = std::min(arena_wanted_, kMaxArenaBytes);
  arena_wanted_ = 0;
  if (wanted <= arena_size_) return cudaSuccess;
  return replace(&arena_, &arena_size_, std::min(grown_size(wanted, kMinArenaBytes), kMaxArenaBytes));
}

cudaError_t PinnedStaging::readback(int64_t bytes, void** data) {
  BM_CHECK(bytes >= 0);
  *data = nullptr;
  if (bytes > kMaxReadbackBytes) return cudaSuccess;
  if (bytes > readback_size_) {
    const cudaError_t e =
        replace(&readback_, &readback_size_, std::min(grown_size(bytes, kMinArenaBytes), kMaxReadbackBytes));
    if (e != cudaSuccess) return e;
  }
  *data = readback_;
  return cudaSuccess;
}

}  // namespace bm::engine::cuda
