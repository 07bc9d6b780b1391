#pragma once
// Collectives between the ranks of one model as threads of one process over host memory: the CPU backend's
// tensor parallelism, which CI uses to prove every sharding rule against the unsharded model. Each collective is
// entered by every rank of the group, each from its own thread, with buffers of equal length; it returns when
// every rank has its result. Reductions are deterministic: every element is summed in rank order 0, 1, ... by
// exactly one rank, so every rank ends with bit-identical values, run after run.
#include <barrier>
#include <cstdint>
#include <memory>
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

  // data[i] = sum over ranks of their data[i], count floats on every rank.
  void all_reduce_sum(float* data, int64_t count);
  // out[rank * count + i] = that rank's in[i]: out holds size() * count floats.
  void all_gather(const float* in, float* out, int64_t count);
  // Every rank's data becomes root's.
  void broadcast(float* data, int64_t count, int32_t root);
  void barrier();

 private:
  struct Group {
    explicit Group(int32_t size) : slots(static_cast<size_t>(size)), sync(size) {}
    std::vector<float*> slots;  // each rank's buffer in the collective under way
    std::barrier<> sync;
  };
  CpuCommunicator(std::shared_ptr<Group> group, int32_t rank) : group_(std::move(group)), rank_(rank) {}

  std::shared_ptr<Group> group_;
  int32_t rank_;
  std::vector<float> partial_;  // this rank's share of a reduction, between the two phases
};

}  // namespace bm::engine::cpu
