#include "engine/backend/quantized_matrix.h"

#include <bit>
#include <cmath>

#include "common/check.h"

namespace bm::engine {

float f16_to_f32(uint16_t bits) {
  const uint32_t sign = uint32_t{bits & 0x8000u} << 16;
  const uint32_t exponent = (bits >> 10) & 0x1f;
  const uint32_t mantissa = bits & 0x3ff;
  if (exponent == 0) {  // zero or subnormal: mantissa · 2^-24, exact in F32
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign != 0 ? -magnitude : magnitude;
  }
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

std::vector<float> dequantize(const QuantizedMatrixSource& source) {
  const QuantizedShape& shape = source.shape;
  const int32_t per_word = shape.values_per_word();
  const uint32_t mask = (uint32_t{1} << shape.bits) - 1;
  BM_CHECK(static_cast<int64_t>(source.qweight.size()) == shape.cols / per_word * shape.rows);
  BM_CHECK(static_cast<int64_t>(source.scales.size()) == shape.num_groups() * shape.rows);
  BM_CHECK(static_cast<int64_t>(source.zeros.size()) == shape.num_groups() * shape.rows);
  BM_CHECK(static_cast<int64_t>(source.perm.size()) == (shape.permuted ? shape.cols : 0));
  BM_CHECK(shape.inputs() == shape.cols || shape.permuted);
  const int64_t inputs = shape.inputs();
  std::vector<float> dense(static_cast<size_t>(shape.rows * inputs));
  for (int64_t i = 0; i < shape.cols; ++i) {
    const int64_t column = shape.permuted ? source.perm[static_cast<size_t>(i)] : i;
    if (column < 0) continue;  // padding
    const int64_t group = i / shape.group_size;
    for (int64_t j = 0; j < shape.rows; ++j) {
      const uint32_t word = source.qweight[static_cast<size_t>(i / per_word * shape.rows + j)];
      const int32_t q = static_cast<int32_t>((word >> (shape.bits * (i % per_word))) & mask);
      const size_t g = static_cast<size_t>(group * shape.rows + j);
      dense[static_cast<size_t>(j * inputs + column)] =
          static_cast<float>(q - int32_t{source.zeros[g]}) * f16_to_f32(source.scales[g]);
    }
  }
  return dense;
}

}  // namespace bm::engine
