#pragma once
// A backend buffer reused from step to step for one activation or index table; it grows (never shrinks) when a
// step needs more rows than any step before.
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"

namespace bm::engine {

class ScratchTensor {
 public:
  // A [rows, cols] view; reallocates when the current buffer is too small (earlier views become invalid).
  absl::StatusOr<Tensor> view(Backend& backend, DType dtype, int64_t rows, int64_t cols);

 private:
  std::unique_ptr<Buffer> buffer_;
};

}  // namespace bm::engine
