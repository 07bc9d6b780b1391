#pragma once
// The CPU reference backend: host memory, F32 accumulation, a small thread pool. See docs/engine-backend.md.
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/cpu/gemm_path.h"

namespace bm::engine {

struct CpuBackendOptions {
  int32_t num_threads = 0;  // 0: one per logical core
  // The GEMM's instruction path for weights loaded through copy_linear_weight_to_device (kAuto: the best the CPU
  // has). The caller checks a forced path with parse_gemm_path first; an absent one aborts.
  cpu::GemmPath gemm_path = cpu::GemmPath::kAuto;
  // CPUs to pin the pool's threads to, one per thread (ThreadPool); empty: the scheduler places them.
  std::vector<int32_t> pin_cpus;
};

std::unique_ptr<Backend> create_cpu_backend(const CpuBackendOptions& options);

}  // namespace bm::engine
