#pragma once
// The collectives tensor parallelism needs between the ranks of one model (docs/tensor-parallel.md): each rank
// holds a Communicator for its place in the group and hands it to its backend's collective ops
// (Backend::all_reduce_sum), so that the collective runs in order with the rank's other ops (on a GPU: on its
// stream, and inside a recorded step graph). Implementations: cpu::CpuCommunicator (threads of one process over
// host memory, engine/backend/cpu/cpu_communicator.h) and the CUDA plugin's NcclCommunicator (one rank per GPU,
// engine/backend/cuda/nccl_communicator.h).
#include <cstdint>
#include <string>
#include <string_view>

namespace bm::engine {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string_view kind() const = 0;  // "cpu"; a backend takes only its own kind
  virtual int32_t rank() const = 0;
  virtual int32_t size() const = 0;
  // Gives up on the whole group after this rank failed outside a collective (a status such as an allocation
  // failure, not a device fault) while its peers may already be waiting in one: every rank's collectives return
  // (NCCL: ncclCommAbort on every rank; CPU ranks: the group's barrier opens for good) and the ranks report the
  // aborted group, naming `reason`, instead of hanging (docs/tensor-parallel.md). Idempotent; the first reason
  // stays. Default: nothing (a communicator of one).
  virtual void abort(const std::string& reason) { (void)reason; }
};

}  // namespace bm::engine
