// out = x · wᵀ + bias. Work is split over tiles of kTileRows weight rows, each multiplied with every activation
// row, so the weights stream from memory once per call whatever n is. Each output element is one dot product
// summed in a fixed order (8 lanes, then pairwise, then the tail) whichever path runs, so a row's result does not
// depend on the batch it came in.
#include <algorithm>
#include <vector>

#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/simd.h"
#include "engine/backend/cpu/weights.h"

namespace bm::engine::cpu {
namespace {

constexpr int64_t kTileRows = 16;
// Decode is bound by how fast the weights arrive. Four weight rows are read side by side, short streams the
// hardware prefetcher ramps up on too late; asking for the rows kPrefetchRows ahead raised batch-1 decode of
// Qwen2.5-0.5B shapes from ~22 to ~31 tokens/s on the 2-core development VM (8 rows); 16 rows gave another ~10%
// with two threads in alternating runs (2026-11-29) and the same with one.
constexpr int64_t kPrefetchRows = 16;
// Up to this many activation rows, BF16 weights are widened in registers as they stream by (decode: memory
// bound); beyond it, a tile is widened once into F32 and reused for every row (prefill: compute bound).
constexpr int64_t kMaxRowsForInRegisterWidening = 4;

// out[i, r] = x[i] · w[r] for r < num_rows; weight rows are `k` elements apart (F32, or BF16 widened in
// registers); out rows `ldo` apart. Both weight types run the same arithmetic in the same order.
template <typename W>
__attribute__((always_inline)) inline void multiply_rows(const float* x, int64_t n, int64_t k, const W* w,
                                                         int64_t num_rows, float* out, int64_t ldo) {
  const int64_t k8 = k - k % kLanes;
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * k;
    float* oi = out + i * ldo;
    int64_t r = 0;
    for (; r + 4 <= num_rows; r += 4) {
      const W* w0 = w + r * k;
      const W* w1 = w0 + k;
      const W* w2 = w1 + k;
      const W* w3 = w2 + k;
      F32x8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
      for (int64_t c = 0; c < k8; c += kLanes) {
        if constexpr (sizeof(W) == 2) {
          if (c % 32 == 0) {
            __builtin_prefetch(w0 + kPrefetchRows * k + c);
            __builtin_prefetch(w1 + kPrefetchRows * k + c);
            __builtin_prefetch(w2 + kPrefetchRows * k + c);
            __builtin_prefetch(w3 + kPrefetchRows * k + c);
          }
        }
        const F32x8 xv = load8(xi + c);
        a0 += xv * load8(w0 + c);
        a1 += xv * load8(w1 + c);
        a2 += xv * load8(w2 + c);
        a3 += xv * load8(w3 + c);
      }
      float s0 = reduce_add(a0), s1 = reduce_add(a1), s2 = reduce_add(a2), s3 = reduce_add(a3);
      for (int64_t c = k8; c < k; ++c) {
        s0 += xi[c] * load1(w0 + c);
        s1 += xi[c] * load1(w1 + c);
        s2 += xi[c] * load1(w2 + c);
        s3 += xi[c] * load1(w3 + c);
      }
      oi[r] = s0;
      oi[r + 1] = s1;
      oi[r + 2] = s2;
      oi[r + 3] = s3;
    }
    for (; r < num_rows; ++r) {
      const W* w0 = w + r * k;
      F32x8 a0 = {};
      for (int64_t c = 0; c < k8; c += kLanes) a0 += load8(xi + c) * load8(w0 + c);
      float s0 = reduce_add(a0);
      for (int64_t c = k8; c < k; ++c) s0 += xi[c] * load1(w0 + c);
      oi[r] = s0;
    }
  }
}

BM_CPU_KERNEL void multiply_rows_f32(const float* x, int64_t n, int64_t k, const float* w, int64_t num_rows, float* out,
                                     int64_t ldo) {
  multiply_rows(x, n, k, w, num_rows, out, ldo);
}

BM_CPU_KERNEL void multiply_rows_bf16(const float* x, int64_t n, int64_t k, const uint16_t* w, int64_t num_rows,
                                      float* out, int64_t ldo) {
  multiply_rows(x, n, k, w, num_rows, out, ldo);
}

BM_CPU_KERNEL void multiply_rows_f16(const float* x, int64_t n, int64_t k, const F16* w, int64_t num_rows, float* out,
                                     int64_t ldo) {
  multiply_rows(x, n, k, w, num_rows, out, ldo);
}

BM_CPU_KERNEL void widen_rows(const uint16_t* bf16, int64_t count, float* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = bf16_to_f32(bf16[i]);
}

BM_CPU_KERNEL void widen_rows_f16(const F16* f16, int64_t count, float* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = f16_to_f32(f16[i].bits);
}

}  // namespace

void linear(ThreadPool& pool, const float* x, int64_t n, int64_t k, ConstData w, int64_t m, ConstData bias,
            float* out) {
  const int64_t num_tiles = (m + kTileRows - 1) / kTileRows;
  pool.parallel_for(num_tiles, 1, [&](int64_t first_tile, int64_t end_tile) {
    thread_local std::vector<float> tile;
    for (int64_t t = first_tile; t < end_tile; ++t) {
      const int64_t row = t * kTileRows;
      const int64_t num_rows = std::min(kTileRows, m - row);
      if (w.dtype == DType::kF32) {
        multiply_rows_f32(x, n, k, static_cast<const float*>(w.data) + row * k, num_rows, out + row, m);
      } else if (n <= kMaxRowsForInRegisterWidening) {
        if (w.dtype == DType::kF16) {
          multiply_rows_f16(x, n, k, static_cast<const F16*>(w.data) + row * k, num_rows, out + row, m);
        } else {
          multiply_rows_bf16(x, n, k, static_cast<const uint16_t*>(w.data) + row * k, num_rows, out + row, m);
        }
      } else {
        tile.resize(static_cast<size_t>(kTileRows * k));
        if (w.dtype == DType::kF16) {
          widen_rows_f16(static_cast<const F16*>(w.data) + row * k, num_rows * k, tile.data());
        } else {
          widen_rows(static_cast<const uint16_t*>(w.data) + row * k, num_rows * k, tile.data());
        }
        multiply_rows_f32(x, n, k, tile.data(), num_rows, out + row, m);
      }
      if (bias.data == nullptr) continue;
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t r = 0; r < num_rows; ++r) out[i * m + row + r] += element_f32(bias, row + r);
      }
    }
  });
}

}  // namespace bm::engine::cpu
