#pragma once
// Reading a BF16, F16 or F32 operand as floats, shared by the CPU kernels. (F16 is what GPTQ/AWQ checkpoints
// ship their unquantized tensors in: embeddings, norms, biases, the head.)
#include <cstdint>

#include "common/check.h"
#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/simd.h"
#include "engine/backend/quantized_matrix.h"

namespace bm::engine::cpu {

// dst[i] = float(src[offset + i]) for i in [0, count).
inline void widen_to_f32(ConstData src, int64_t offset, int64_t count, float* dst) {
  if (src.dtype == DType::kBF16) {
    const uint16_t* bits = static_cast<const uint16_t*>(src.data) + offset;
    for (int64_t i = 0; i < count; ++i) dst[i] = bf16_to_f32(bits[i]);
    return;
  }
  if (src.dtype == DType::kF16) {
    const uint16_t* bits = static_cast<const uint16_t*>(src.data) + offset;
    for (int64_t i = 0; i < count; ++i) dst[i] = f16_to_f32(bits[i]);
    return;
  }
  BM_CHECK(src.dtype == DType::kF32);
  const float* values = static_cast<const float*>(src.data) + offset;
  for (int64_t i = 0; i < count; ++i) dst[i] = values[i];
}

inline float element_f32(ConstData src, int64_t index) {
  if (src.dtype == DType::kBF16) return bf16_to_f32(static_cast<const uint16_t*>(src.data)[index]);
  if (src.dtype == DType::kF16) return f16_to_f32(static_cast<const uint16_t*>(src.data)[index]);
  return static_cast<const float*>(src.data)[index];
}

}  // namespace bm::engine::cpu
