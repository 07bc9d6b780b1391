// The small-batch linear for BF16 weights: out[n, m] = x[n, k] · w[m, k]ᵀ (+ bias) for n <= kGemvMaxRows
// activation rows, x in F32 as linear() receives it (no BF16 conversion pass), F32 accumulation. At decode the
// product is bound by reading w once from HBM (m·k·2 bytes); a cuBLASLt tile sized for large n wastes most of its
// MMA work and may not stream w at full bandwidth, so gemm.cpp times this kernel against cuBLASLt's candidates
// per shape at load and keeps the faster (docs/cuda-backend.md, "Small-batch GEMMs").
//
// One warp per output column j (a row of w): its lanes stream the row in 16-byte loads (8 BF16), lane l taking
// chunks l, l + 32, ..., kGemvUnroll loads in flight before any math; every activation row's F32 inputs for
// that chunk come from L1/L2 (x is at most 8 · k · 4 bytes, read by every warp). Each lane accumulates its
// chunks in increasing order, then a fixed xor-butterfly sums the lanes: the result does not depend on
// scheduling. When k is not a multiple of 8, or w or x is not 16-byte aligned, the same structure runs on
// single elements (the vector loads would straddle rows).
#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_util.cuh"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {
namespace {

constexpr int kGemvWarps = 8;  // warps per block
constexpr int kGemvUnroll = 4;

// R >= n rows of x; C output columns per warp, so each x load feeds C weight rows (at n >= 4 the x traffic
// through L1, 32·n bytes per 16 bytes of W, would otherwise bind before HBM does); Vec: the 16-byte path
// (k % 8 == 0, w and x 16-byte aligned). A warp's columns past m load column m - 1 again and store nothing.
template <int R, int C, bool Vec>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_bf16_kernel(const uint16_t* __restrict__ w, const float* __restrict__ x, int32_t n, int64_t m, int64_t k,
                     const void* bias, bool bias_bf16, float* __restrict__ out) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t j0 = (int64_t{blockIdx.x} * kGemvWarps + static_cast<int64_t>(threadIdx.x) / 32) * C;
  if (j0 >= m) return;  // whole warps leave together: the shuffles below see all 32 lanes
  const uint16_t* rows[C];
#pragma unroll
  for (int c = 0; c < C; ++c) rows[c] = w + (j0 + c < m ? j0 + c : m - 1) * k;
  float acc[C][R];
#pragma unroll
  for (int c = 0; c < C; ++c) {
#pragma unroll
    for (int r = 0; r < R; ++r) acc[c][r] = 0.0f;
  }
  if constexpr (Vec) {
    const int64_t chunks = k / 8;
    for (int64_t base = lane; base < chunks; base += 32 * kGemvUnroll) {
      uint4 packed[C][kGemvUnroll];
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u) {
        const int64_t e = base + int64_t{u} * 32;
#pragma unroll
        for (int c = 0; c < C; ++c)
          packed[c][u] = e < chunks ? reinterpret_cast<const uint4*>(rows[c])[e] : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u) {
        const int64_t e = base + int64_t{u} * 32;
        if (e >= chunks) break;
        // A BF16 is the high half of an F32: moving the bits into place is the exact conversion.
        float wv[C][8];
#pragma unroll
        for (int c = 0; c < C; ++c) {
          const uint4 p = packed[c][u];
          wv[c][0] = __uint_as_float(p.x << 16);
          wv[c][1] = __uint_as_float(p.x & 0xffff0000u);
          wv[c][2] = __uint_as_float(p.y << 16);
          wv[c][3] = __uint_as_float(p.y & 0xffff0000u);
          wv[c][4] = __uint_as_float(p.z << 16);
          wv[c][5] = __uint_as_float(p.z & 0xffff0000u);
          wv[c][6] = __uint_as_float(p.w << 16);
          wv[c][7] = __uint_as_float(p.w & 0xffff0000u);
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
          if (r >= n) break;
          const float4* xr = reinterpret_cast<const float4*>(x + r * k + e * 8);
          const float4 lo = xr[0];
          const float4 hi = xr[1];
#pragma unroll
          for (int c = 0; c < C; ++c) {
            float s = acc[c][r];
            s += lo.x * wv[c][0];
            s += lo.y * wv[c][1];
            s += lo.z * wv[c][2];
            s += lo.w * wv[c][3];
            s += hi.x * wv[c][4];
            s += hi.y * wv[c][5];
            s += hi.z * wv[c][6];
            s += hi.w * wv[c][7];
            acc[c][r] = s;
          }
        }
      }
    }
  } else {
    for (int64_t i = lane; i < k; i += 32) {
#pragma unroll
      for (int c = 0; c < C; ++c) {
        const float wv = bf16_bits_to_f32(rows[c][i]);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          if (r >= n) break;
          acc[c][r] += x[r * k + i] * wv;
        }
      }
    }
  }
  // Every lane ends with every sum; lane r writes row r (constant register indices: no local-memory array).
#pragma unroll
  for (int c = 0; c < C; ++c) {
#pragma unroll
    for (int r = 0; r < R; ++r) acc[c][r] = warp_sum(acc[c][r]);
  }
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int64_t j = j0 + c;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (lane == r && r < n && j < m) {
        float v = acc[c][r];
        if (bias != nullptr) v += load_weight(bias, bias_bf16, j);
        out[r * m + j] = v;
      }
    }
  }
}

// One column per warp up to 2 rows (more warps for the small-m projections at batch 1), two from 4 rows on.
template <int R, bool Vec>
void launch_rows(const uint16_t* w, const float* x, int32_t n, int64_t m, int64_t k, WeightPtr bias, float* out,
                 cudaStream_t stream) {
  constexpr int kColumns = R >= 4 ? 2 : 1;
  const int64_t blocks = ceil_div(m, int64_t{kGemvWarps} * kColumns);
  gemv_bf16_kernel<R, kColumns, Vec>
      <<<static_cast<unsigned>(blocks), kGemvWarps * 32, 0, stream>>>(w, x, n, m, k, bias.data, bias.bf16, out);
}

template <bool Vec>
void launch_vec(const uint16_t* w, const float* x, int32_t n, int64_t m, int64_t k, WeightPtr bias, float* out,
                cudaStream_t stream) {
  // Rows rounded up to 1, 2, 4 or 8: four instantiations per path, the unused accumulators skipped by `r >= n`.
  using Launch = void (*)(const uint16_t*, const float*, int32_t, int64_t, int64_t, WeightPtr, float*, cudaStream_t);
  static constexpr Launch kByRows[kGemvMaxRows + 1] = {
      nullptr,
      launch_rows<1, Vec>,
      launch_rows<2, Vec>,
      launch_rows<4, Vec>,
      launch_rows<4, Vec>,
      launch_rows<8, Vec>,
      launch_rows<8, Vec>,
      launch_rows<8, Vec>,
      launch_rows<8, Vec>,
  };
  kByRows[n](w, x, n, m, k, bias, out, stream);
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace

bool gemv_vectorized(const void* w, const float* x, int64_t k) {
  return k % 8 == 0 && aligned16(w) && aligned16(x);
}

void launch_gemv_bf16(const void* w, const float* x, int64_t m, int64_t n, int64_t k, WeightPtr bias, float* out,
                      cudaStream_t stream) {
  BM_CHECK(w != nullptr && x != nullptr && out != nullptr);
  BM_CHECK(m > 0 && k > 0 && n >= 0 && n <= kGemvMaxRows);
  BM_CHECK(ceil_div(m, int64_t{kGemvWarps}) <= 0x7fffffff);
  if (n == 0) return;
  const auto* weights = static_cast<const uint16_t*>(w);
  const auto rows = static_cast<int32_t>(n);
  if (gemv_vectorized(w, x, k)) {
    launch_vec<true>(weights, x, rows, m, k, bias, out, stream);
  } else {
    launch_vec<false>(weights, x, rows, m, k, bias, out, stream);
  }
  BM_CUDA_CHECK_LAUNCH();
}

}  // namespace bm::engine::cuda
