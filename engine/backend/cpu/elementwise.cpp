// Row lookups and elementwise ops; the loops are simple enough for the compiler to vectorise.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/weights.h"

namespace bm::engine::cpu {
namespace {

constexpr int64_t kElementGrain = 1 << 14;

// The one expression of silu_mul and silu_mul_fused, so that the fused MLP gives the unfused one's bits.
inline float silu_times(float g, float u) {
  return g / (1.0f + std::exp(-g)) * u;
}

}  // namespace

void embedding(ThreadPool& pool, ConstData table, int64_t vocab, int64_t hidden, const int32_t* ids, int64_t n,
               float* out) {
  pool.parallel_for(n, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      BM_CHECK(ids[i] >= 0 && ids[i] < vocab);
      widen_to_f32(table, static_cast<int64_t>(ids[i]) * hidden, hidden, out + i * hidden);
    }
  });
}

void silu_mul(ThreadPool& pool, const float* gate, const float* up, int64_t count, float* out) {
  pool.parallel_for(count, kElementGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = silu_times(gate[i], up[i]);
  });
}

void silu_mul_fused(ThreadPool& pool, const float* gate_up, int64_t n, int64_t d, float* out) {
  pool.parallel_for(n, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(d, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float* gate = gate_up + t * 2 * d;
      const float* up = gate + d;
      float* row = out + t * d;
      for (int64_t i = 0; i < d; ++i) row[i] = silu_times(gate[i], up[i]);
    }
  });
}

// Exact GELU, x * Φ(x) with the erf form, as torch's nn.GELU() (approximate='none').
void gelu(ThreadPool& pool, const float* x, int64_t count, float* out) {
  pool.parallel_for(count, kElementGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float v = x[i];
      out[i] = 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752440f));
    }
  });
}

void add(ThreadPool& pool, const float* a, const float* b, int64_t count, float* out) {
  pool.parallel_for(count, kElementGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = a[i] + b[i];
  });
}

void gather_rows(ThreadPool& pool, const float* x, int64_t d, const int32_t* row_ids, int64_t num_rows, float* out) {
  for (int64_t r = 0; r < num_rows; ++r) {
    std::memcpy(out + r * d, x + static_cast<int64_t>(row_ids[r]) * d, static_cast<size_t>(d) * sizeof(float));
  }
}

}  // namespace bm::engine::cpu
