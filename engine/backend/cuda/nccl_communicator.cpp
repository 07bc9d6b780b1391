#include "engine/backend/cuda/nccl_communicator.h"

#include <cuda_runtime_api.h>

#include <cstdio>

namespace bm::engine::cuda {

// ncclCommInitAll from the one (loader's) thread rather than ncclGetUniqueId + ncclCommInitRank on each rank's
// thread: the ranks are threads of one process, and ncclCommInitAll is NCCL's single-process initialisation — it
// makes the unique id and runs ncclCommInitRank for every device inside one group call, setting each device
// itself. It needs no threads to be started across the plugin boundary and cannot deadlock on a rank whose
// thread has not started yet. A communicator is not tied to the thread that created it: each rank's collectives
// later run on that rank's thread with its device current (CudaBackend::ready sets it), which is NCCL's
// "one thread per GPU" model.
std::shared_ptr<NcclGroup> NcclGroup::create(const NcclApi& api, const std::vector<int>& devices, std::string* error) {
  std::shared_ptr<NcclGroup> group(new NcclGroup(api, devices));
  group->comms_.assign(devices.size(), nullptr);
  int previous = 0;
  if (const cudaError_t e = cudaGetDevice(&previous); e != cudaSuccess) {
    cudaGetLastError();
    *error = std::string("cudaGetDevice failed before creating the NCCL communicators: ") + cudaGetErrorName(e) +
             " (" + cudaGetErrorString(e) + ")";
    return nullptr;
  }
  const int result = api.comm_init_all(group->comms_.data(), static_cast<int>(devices.size()), devices.data());
  // ncclCommInitAll changes the current device; the caller's thread keeps the one it had. A failure to switch
  // back is not fatal (every backend call sets its own device first) but is said.
  if (const cudaError_t e = cudaSetDevice(previous); e != cudaSuccess) {
    cudaGetLastError();
    std::fprintf(stderr, "bmserver: cudaSetDevice(%d) after ncclCommInitAll failed: %s\n", previous,
                 cudaGetErrorName(e));
  }
  if (result != kNcclSuccess) {
    *error = "ncclCommInitAll over " + std::to_string(devices.size()) + " GPUs failed: " + nccl_error_text(result);
    // On failure NCCL has freed whatever it created; nothing to destroy.
    group->comms_.assign(devices.size(), nullptr);
    group->aborted_.store(true, std::memory_order_release);
    return nullptr;
  }
  return group;
}

NcclGroup::~NcclGroup() {
  if (aborted()) return;  // ncclCommAbort freed them
  // Finalize every rank inside one group call, then destroy: ncclCommFinalize flushes a rank's outstanding work,
  // which may wait on its peers, so finalizing rank 0 alone from this one thread before rank 1 could block. Inside
  // ncclGroupStart/End NCCL progresses them together (NCCL's documented way of finalizing several communicators
  // from one thread). Without ncclCommFinalize (NCCL < 2.14) ncclCommDestroy alone does the whole teardown.
  if (api_.comm_finalize != nullptr) {
    if (const int r = api_.group_start(); r != kNcclSuccess)
      std::fprintf(stderr, "bmserver: ncclGroupStart failed: %s\n", nccl_error_text(r).c_str());
    for (NcclCommHandle comm : comms_) {
      if (const int r = api_.comm_finalize(comm); r != kNcclSuccess && r != kNcclInProgress)
        std::fprintf(stderr, "bmserver: ncclCommFinalize failed: %s\n", nccl_error_text(r, comm).c_str());
    }
    if (const int r = api_.group_end(); r != kNcclSuccess)
      std::fprintf(stderr, "bmserver: ncclGroupEnd (finalize) failed: %s\n", nccl_error_text(r).c_str());
  }
  for (NcclCommHandle comm : comms_) {
    if (const int r = api_.comm_destroy(comm); r != kNcclSuccess)
      std::fprintf(stderr, "bmserver: ncclCommDestroy failed: %s\n", nccl_error_text(r).c_str());
  }
}

std::string NcclGroup::abort_reason() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return reason_;
}

void NcclGroup::abort(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (aborted_.load(std::memory_order_relaxed)) return;
    reason_ = reason;
    aborted_.store(true, std::memory_order_release);
  }
  // ncclCommAbort makes this rank's kernels still waiting on a peer return and frees the communicator; it is
  // documented as callable from another thread than the one using the communicator (the point of it: unblocking a
  // hang). A rank thread that is between its aborted() check and its ncclAllReduce enqueue when this runs is the
  // remaining race (it would use a freed communicator); the check right before every enqueue makes that window a
  // few instructions wide.
  std::fprintf(stderr, "bmserver: aborting the NCCL group of %zu GPUs: %s\n", comms_.size(), reason.c_str());
  for (NcclCommHandle comm : comms_) {
    if (comm == nullptr) continue;
    if (const int r = api_.comm_abort(comm); r != kNcclSuccess)
      std::fprintf(stderr, "bmserver: ncclCommAbort failed: %s\n", nccl_error_text(r).c_str());
  }
}

}  // namespace bm::engine::cuda
