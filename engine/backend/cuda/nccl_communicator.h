#pragma once
// The NCCL communicator of the CUDA plugin (docs/tensor-parallel.md): one rank per GPU, the ranks being threads of
// one process (TensorParallelLM runs rank 0 on the engine thread, the others on threads of their own). Every rank
// of a group shares one NcclGroup, which owns the NCCL communicators and tears them down together.
//
// Faults: an NCCL call that fails, an asynchronous NCCL error, or a device fault recorded by any rank's backend
// aborts the whole group (ncclCommAbort on every rank's communicator): a rank that dies while its peers sit in an
// all-reduce kernel waiting for it would otherwise hang them for ever. An aborted group is sticky: every later
// collective of every rank is skipped and reported as a device fault naming the first cause, so every rank's
// backend reports the engine failed (Backend::device_status).
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "engine/backend/communicator.h"
#include "engine/backend/cuda/nccl_api.h"

namespace bm::engine::cuda {

class NcclGroup {
 public:
  // Creates the communicators of `devices` (CUDA ordinals, one rank each, rank r on devices[r]). Returns null and
  // writes a sentence into *error on failure.
  static std::shared_ptr<NcclGroup> create(const NcclApi& api, const std::vector<int>& devices, std::string* error);
  ~NcclGroup();
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  int32_t size() const { return static_cast<int32_t>(comms_.size()); }
  int device(int32_t rank) const { return devices_[static_cast<size_t>(rank)]; }
  NcclCommHandle comm(int32_t rank) const { return comms_[static_cast<size_t>(rank)]; }
  const NcclApi& api() const { return api_; }

  bool aborted() const { return aborted_.load(std::memory_order_acquire); }
  // Why the group was aborted (empty while it was not).
  std::string abort_reason() const;
  // Aborts every rank's communicator once (later calls only keep the first reason). Any thread may call it.
  void abort(const std::string& reason);

 private:
  NcclGroup(const NcclApi& api, std::vector<int> devices) : api_(api), devices_(std::move(devices)) {}

  const NcclApi& api_;
  std::vector<int> devices_;
  std::vector<NcclCommHandle> comms_;
  std::atomic<bool> aborted_{false};
  mutable std::mutex mutex_;
  std::string reason_;
};

// One rank's place in a group: what the engine holds and hands to that rank's CudaBackend::all_reduce_sum.
class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<NcclGroup> group, int32_t rank) : group_(std::move(group)), rank_(rank) {}
  std::string_view kind() const override { return "nccl"; }
  int32_t rank() const override { return rank_; }
  int32_t size() const override { return group_->size(); }
  int device() const { return group_->device(rank_); }
  NcclCommHandle comm() const { return group_->comm(rank_); }
  const std::shared_ptr<NcclGroup>& group() const { return group_; }
  void abort(const std::string& reason) override {
    group_->abort("rank " + std::to_string(rank_) + " failed: " + reason);
  }

 private:
  std::shared_ptr<NcclGroup> group_;  // the last rank destroyed destroys the communicators
  int32_t rank_;
};

}  // namespace bm::engine::cuda
