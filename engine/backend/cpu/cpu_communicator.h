#pragma once
// Collectives between the ranks of one model as threads of one process over host memory: the CPU backend's
// tensor parallelism, which CI uses to prove every sharding rule against the unsharded model. Each collective is
// entered by every rank of the group, each from its own thread, with buffers of equal length; it returns when
// every rank has its result. Reductions are deterministic: every element is summed in rank order 0, 1, ... by
// exactly one rank, so every rank ends with bit-identical values, run after run.
//
// Abortable: a rank that fails outside a collective (an allocation only it met) calls abort(), which wakes every
// rank waiting in a collective; they, and every later collective of the group on any rank, return false without
// touching the buffers. The group stays aborted (its ranks can no longer agree on where they are).
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/backend/communicator.h"

namespace bm::engine::cpu {

class CpuCommunicator final : public Communicator {
 public:
  // The communicators of a group of `size` ranks, rank i at index i.
  static std::vector<std::unique_ptr<CpuCommunicator>> create_group(int32_t size);

  std::string_view kind() const override { return "cpu"; }
  int32_t rank() const override { return rank_; }
  int32_t size() const override { return static_cast<int32_t>(group_->slots.size()); }
  // The group's reason becomes "rank R of N failed: <reason>" (the first abort's; later ones change nothing).
  void abort(const std::string& reason) override;
  // Empty while the group is whole; else the first abort's reason, as above.
  std::string abort_reason() const;

  // Each returns false, leaving the buffers unspecified, when the group is aborted.
  // data[i] = sum over ranks of their data[i], count floats on every rank.
  bool all_reduce_sum(float* data, int64_t count);
  // out[rank * count + i] = that rank's in[i]: out holds size() * count floats.
  bool all_gather(const float* in, float* out, int64_t count);
  // Every rank's data becomes root's.
  bool broadcast(float* data, int64_t count, int32_t root);
  bool barrier();

 private:
  // A reusable barrier that abort() opens for good. Waiters sleep on `phase` (std::atomic::wait: a short spin,
  // then a futex), which the last arrival or abort() advances.
  struct Group {
    explicit Group(int32_t size) : slots(static_cast<size_t>(size)) {}
    std::vector<float*> slots;  // each rank's buffer in the collective under way
    std::atomic<int32_t> arrived{0};
    std::atomic<uint32_t> phase{0};
    std::atomic<bool> aborted{false};
    mutable std::mutex reason_mutex;
    std::string reason;
  };
  CpuCommunicator(std::shared_ptr<Group> group, int32_t rank) : group_(std::move(group)), rank_(rank) {}

  std::shared_ptr<Group> group_;
  int32_t rank_;
  std::vector<float> partial_;  // this rank's share of a reduction, between the two phases
};

}  // namespace bm::engine::cpu
