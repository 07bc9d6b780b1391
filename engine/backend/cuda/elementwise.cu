// Elementwise F32 ops (SiLU-gated product, also over the halves of a fused gate/up row, exact GELU, residual add), the F32 -> BF16 conversion of GEMM inputs, and
// the bias add after a GEMM. Grid-stride loops over int64 indices; in-place use (out == a or b) is safe because every
// element is read and written by the same thread.
#include <cuda_bf16.h>

#include <algorithm>

#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_util.cuh"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t count) {
  return static_cast<unsigned>(std::min<int64_t>(ceil_div(count, kThreads), int64_t{1} << 20));
}

// The one expression of silu_mul and silu_mul_fused (the CPU backend's), so the fused MLP gives the unfused bits.
__device__ __forceinline__ float silu_times(float g, float u) {
  return g / (1.0f + expf(-g)) * u;
}

__global__ void silu_mul_kernel(const float* gate, const float* up, int64_t count, float* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = silu_times(gate[i], up[i]);
  }
}

// Element (t, c) of out [n, d] from gate_up's row t: gate at c, up at d + c.
__global__ void silu_mul_fused_kernel(const float* gate_up, int64_t d, int64_t count, float* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / d, c = i - t * d;
    const float* row = gate_up + t * 2 * d;
    out[i] = silu_times(row[c], row[d + c]);
  }
}

// Exact (erf) GELU as torch's nn.GELU(): x * Φ(x) = 0.5 x (1 + erf(x / √2)). erff is CUDA's full-precision erf
// (max 2 ulp; no fast-math in the plugin), the same expression as the CPU backend's, so results differ from it
// only by erf's last bits. For large |x| erf saturates to ±1: x for large positive x, -0 for large negative x.
__global__ void gelu_kernel(const float* x, int64_t count, float* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const float v = x[i];
    out[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752440f));
  }
}

__global__ void add_kernel(const float* a, const float* b, int64_t count, float* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = a[i] + b[i];
  }
}

__global__ void f32_to_bf16_kernel(const float* src, int64_t count, __nv_bfloat16* dst) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = __float2bfloat16_rn(src[i]);
  }
}

__global__ void add_bias_kernel(float* out, int64_t count, int64_t m, const void* bias, bool bf16) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] += load_weight(bias, bf16, i % m);
  }
}

}  // namespace

void launch_silu_mul(const float* gate, const float* up, int64_t count, float* out, cudaStream_t stream) {
  BM_CHECK(count >= 0 && gate != nullptr && up != nullptr && out != nullptr);
  if (count == 0) return;
  silu_mul_kernel<<<grid_for(count), kThreads, 0, stream>>>(gate, up, count, out);
  BM_CUDA_CHECK_LAUNCH();
}

void launch_silu_mul_fused(const float* gate_up, int64_t n, int64_t d, float* out, cudaStream_t stream) {
  BM_CHECK(n >= 0 && d > 0 && gate_up != nullptr && out != nullptr);
  if (n == 0) return;
  silu_mul_fused_kernel<<<grid_for(n * d), kThreads, 0, stream>>>(gate_up, d, n * d, out);
  BM_CUDA_CHECK_LAUNCH();
}

void launch_gelu(const float* x, int64_t count, float* out, cudaStream_t stream) {
  BM_CHECK(count >= 0 && x != nullptr && out != nullptr);
  if (count == 0) return;
  gelu_kernel<<<grid_for(count), kThreads, 0, stream>>>(x, count, out);
  BM_CUDA_CHECK_LAUNCH();
}

void launch_add(const float* a, const float* b, int64_t count, float* out, cudaStream_t stream) {
  BM_CHECK(count >= 0 && a != nullptr && b != nullptr && out != nullptr);
  if (count == 0) return;
  add_kernel<<<grid_for(count), kThreads, 0, stream>>>(a, b, count, out);
  BM_CUDA_CHECK_LAUNCH();
}

void launch_f32_to_bf16(const float* src, int64_t count, uint16_t* dst, cudaStream_t stream) {
  BM_CHECK(count >= 0 && src != nullptr && dst != nullptr);
  if (count == 0) return;
  f32_to_bf16_kernel<<<grid_for(count), kThreads, 0, stream>>>(src, count, reinterpret_cast<__nv_bfloat16*>(dst));
  BM_CUDA_CHECK_LAUNCH();
}

void launch_add_bias(float* out, int64_t n, int64_t m, WeightPtr bias, cudaStream_t stream) {
  BM_CHECK(n >= 0 && m > 0 && out != nullptr && bias.data != nullptr);
  if (n == 0) return;
  add_bias_kernel<<<grid_for(n * m), kThreads, 0, stream>>>(out, n * m, m, bias.data, bias.bf16);
  BM_CUDA_CHECK_LAUNCH();
}

}  // namespace bm::engine::cuda
