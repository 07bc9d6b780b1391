// RMSNorm as Hugging Face Qwen2/Llama compute it in float32: x / sqrt(mean(x²) + eps), then times the weight.
#include <cmath>
#include <vector>

#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/simd.h"
#include "engine/backend/cpu/weights.h"

namespace bm::engine::cpu {
namespace {

BM_CPU_KERNEL float sum_of_squares(const float* x, int64_t d) {
  const int64_t d8 = d - d % kLanes;
  F32x8 acc = {};
  for (int64_t c = 0; c < d8; c += kLanes) {
    const F32x8 v = load8(x + c);
    acc += v * v;
  }
  float sum = reduce_add(acc);
  for (int64_t c = d8; c < d; ++c) sum += x[c] * x[c];
  return sum;
}

}  // namespace

void rms_norm(ThreadPool& pool, const float* x, int64_t n, int64_t d, ConstData weight, float eps, float* out) {
  std::vector<float> w(static_cast<size_t>(d));
  widen_to_f32(weight, 0, d, w.data());
  pool.parallel_for(n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* xi = x + i * d;
      float* oi = out + i * d;
      const float inverse_rms = 1.0f / std::sqrt(sum_of_squares(xi, d) / static_cast<float>(d) + eps);
      for (int64_t c = 0; c < d; ++c) oi[c] = w[c] * (xi[c] * inverse_rms);
    }
  });
}

}  // namespace bm::engine::cpu
