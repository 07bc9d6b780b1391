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
  // failure, not a device fault) while its peers may already be waiting in one: the NCCL communicator aborts
  // every rank's communicator, so they return and report the failure instead of hanging. Default: nothing (CPU
  // ranks wait in a std::barrier, which cannot be interrupted; docs/tensor-parallel.md).
  virtual void abort(const std::string& reason) { (void)reason; }
};

}  // namespace bm::engine
