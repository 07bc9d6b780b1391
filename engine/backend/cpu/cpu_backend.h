#pragma once
// The CPU reference backend: host memory, F32 accumulation, a small thread pool. See docs/engine-backend.md.
#include <cstdint>
#include <memory>

#include "engine/backend/backend.h"

namespace bm::engine {

struct CpuBackendOptions {
  int32_t num_threads = 0;  // 0: one per logical core
};

std::unique_ptr<Backend> create_cpu_backend(const CpuBackendOptions& options);

}  // namespace bm::engine
