#pragma once
// Typed access to a tensor's bytes inside the backend that allocated its buffer (BufferT, whose data() is the
// buffer's first byte): the view must lie inside the buffer and have the expected dtype. Shared by the CPU
// backend and the CUDA plugin, which each instantiate it with their own buffer type.
#include <cstddef>

#include "common/check.h"
#include "engine/backend/backend.h"

namespace bm::engine {

template <typename BufferT>
std::byte* tensor_bytes(const Tensor& tensor) {
  BM_CHECK(tensor.buffer != nullptr);
  BM_CHECK(tensor.offset_bytes >= 0 && tensor.rows >= 0 && tensor.cols >= 0);
  BM_CHECK(tensor.offset_bytes + tensor.num_bytes() <= tensor.buffer->size_bytes());
  return reinterpret_cast<std::byte*>(static_cast<BufferT*>(tensor.buffer)->data()) + tensor.offset_bytes;
}

template <typename T, typename BufferT>
T* tensor_data(const Tensor& tensor, DType dtype) {
  BM_CHECK(tensor.dtype == dtype);
  return reinterpret_cast<T*>(tensor_bytes<BufferT>(tensor));
}

}  // namespace bm::engine
