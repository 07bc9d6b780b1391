// The plain GEMM linear() falls back to when cuBLASLt offers no algorithm for a shape, or refuses every one it
// offered (gemm.cpp): out[n, m] = x[n, k] · w[m, k]ᵀ, both inputs BF16 or both F32, F32 accumulation in
// increasing k (deterministic). One 256-thread block per 16 × 16 output tile, both operands staged through shared
// memory 16 inputs at a time. Correct and simple, not fast (no tensor cores): it keeps a step from failing
// where the fast path is unavailable; gemm.cpp says so on stderr once per shape.
#include <algorithm>

#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_util.cuh"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {
namespace {

constexpr int kTile = 16;

__global__ void gemm_fallback_kernel(const void* w, const void* x, bool bf16, int64_t m, int64_t n, int64_t k,
                                     float* out) {
  __shared__ float xs[kTile][kTile + 1];
  __shared__ float ws[kTile][kTile + 1];
  const int tx = static_cast<int>(threadIdx.x) % kTile;  // output column within the tile, and input when loading
  const int ty = static_cast<int>(threadIdx.x) / kTile;  // output row within the tile
  const int64_t col0 = int64_t{blockIdx.x} * kTile;
  const int64_t row0 = int64_t{blockIdx.y} * kTile;
  float acc = 0.0f;
  for (int64_t k0 = 0; k0 < k; k0 += kTile) {
    const int64_t kk = k0 + tx;
    const int64_t x_row = row0 + ty;
    const int64_t w_row = col0 + ty;
    xs[ty][tx] = x_row < n && kk < k ? load_weight(x, bf16, x_row * k + kk) : 0.0f;
    ws[ty][tx] = w_row < m && kk < k ? load_weight(w, bf16, w_row * k + kk) : 0.0f;
    __syncthreads();
    for (int j = 0; j < kTile; ++j) acc += xs[ty][j] * ws[tx][j];
    __syncthreads();
  }
  const int64_t row = row0 + ty;
  const int64_t col = col0 + tx;
  if (row < n && col < m) out[row * m + col] = acc;
}

}  // namespace

void launch_gemm_fallback(const void* w, const void* x, bool bf16, int64_t m, int64_t n, int64_t k, float* out,
                          cudaStream_t stream) {
  BM_CHECK(w != nullptr && x != nullptr && out != nullptr);
  BM_CHECK(m > 0 && n >= 0 && k > 0);
  if (n == 0) return;
  const int64_t col_tiles = ceil_div(m, int64_t{kTile});
  const int64_t row_tiles = ceil_div(n, int64_t{kTile});
  BM_CHECK(col_tiles <= 0x7fffffff && row_tiles <= 65535);  // linear() runs at most 32M-element row chunks
  gemm_fallback_kernel<<<dim3(static_cast<unsigned>(col_tiles), static_cast<unsigned>(row_tiles)), kTile * kTile, 0,
                         stream>>>(w, x, bf16, m, n, k, out);
  BM_CUDA_CHECK_LAUNCH();
}

}  // namespace bm::engine::cuda
