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

BM_CPU_KERNEL void add_in_place(float* x, const float* r, int64_t d) {
  const int64_t d8 = d - d % kLanes;
  for (int64_t c = 0; c < d8; c += kLanes) store8(x + c, load8(x + c) + load8(r + c));
  for (int64_t c = d8; c < d; ++c) x[c] += r[c];
}

void normalize_row(const float* xi, int64_t d, const float* w, float eps, float* oi) {
  const float inverse_rms = 1.0f / std::sqrt(sum_of_squares(xi, d) / static_cast<float>(d) + eps);
  for (int64_t c = 0; c < d; ++c) oi[c] = w[c] * (xi[c] * inverse_rms);
}

}  // namespace

void rms_norm(ThreadPool& pool, const float* x, int64_t n, int64_t d, ConstData weight, float eps, float* out) {
  std::vector<float> w(static_cast<size_t>(d));
  widen_to_f32(weight, 0, d, w.data());
  pool.parallel_for(n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) normalize_row(x + i * d, d, w.data(), eps, out + i * d);
  });
}

void add_rms_norm(ThreadPool& pool, float* x, const float* residual, int64_t n, int64_t d, ConstData weight, float eps,
                  float* out) {
  std::vector<float> w(static_cast<size_t>(d));
  widen_to_f32(weight, 0, d, w.data());
  pool.parallel_for(n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      add_in_place(x + i * d, residual + i * d, d);  // before the norm writes out, which may be the residual
      normalize_row(x + i * d, d, w.data(), eps, out + i * d);
    }
  });
}

}  // namespace bm::engine::cpu
