#pragma once
// A checkpoint or fixture tensor's values as floats (tests): F32 as stored, BF16 widened exactly.
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/check.h"
#include "engine/backend/cpu/bf16.h"
#include "engine/model/safetensors_file.h"

namespace bm::engine::testing {

inline std::vector<float> tensor_floats(const TensorInfo& info) {
  BM_CHECK(info.dtype == DType::kF32 || info.dtype == DType::kBF16);
  std::vector<float> out(static_cast<size_t>(info.num_elements()));
  if (info.dtype == DType::kF32) {
    std::memcpy(out.data(), info.data.data(), info.data.size());
    return out;
  }
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t bits;
    std::memcpy(&bits, info.data.data() + 2 * i, 2);
    out[i] = cpu::bf16_to_f32(bits);
  }
  return out;
}

}  // namespace bm::engine::testing
