#include "engine/models/scratch_tensor.h"

#include <algorithm>

namespace bm::engine {

absl::StatusOr<Tensor> ScratchTensor::view(Backend& backend, DType dtype, int64_t rows, int64_t cols) {
  const int64_t needed = std::max<int64_t>(1, rows * cols * dtype_size(dtype));
  if (buffer_ == nullptr || buffer_->size_bytes() < needed) {
    // Grow geometrically so that a slowly growing batch does not reallocate every step.
    const int64_t capacity = std::max(needed, buffer_ != nullptr ? buffer_->size_bytes() * 2 : needed);
    buffer_.reset();
    absl::StatusOr<std::unique_ptr<Buffer>> buffer = backend.allocate(capacity);
    if (!buffer.ok()) return buffer.status();
    buffer_ = std::move(*buffer);
  }
  return Tensor{buffer_.get(), 0, dtype, rows, cols};
}

}  // namespace bm::engine
