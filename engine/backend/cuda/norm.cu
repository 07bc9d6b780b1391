// RMSNorm, one block per row: the sum of squares is reduced over the block in F32, then every element is
// scaled as the CPU reference does: w[c] * (x[c] * (1 / sqrt(mean + eps))). x and out may alias: each thread
// reads its elements before the reduction's barrier and writes only its own elements after it.
#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_util.cuh"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void rms_norm_kernel(const float* x, int64_t d, const void* weight, bool bf16, float eps, float* out) {
  const float* xi = x + static_cast<int64_t>(blockIdx.x) * d;
  float* oi = out + static_cast<int64_t>(blockIdx.x) * d;
  float sum = 0.0f;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) sum += xi[c] * xi[c];
  sum = block_sum(sum);
  const float inverse_rms = 1.0f / sqrtf(sum / static_cast<float>(d) + eps);
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) oi[c] = load_weight(weight, bf16, c) * (xi[c] * inverse_rms);
}

// The residual add fused in: each thread adds and stores its own elements of x, then (after the reduction's
// barrier) normalises the same elements, so out may alias the residual: an element of it is read before the same
// thread overwrites it.
__global__ void add_rms_norm_kernel(float* x, const float* residual, int64_t d, const void* weight, bool bf16,
                                    float eps, float* out) {
  float* xi = x + static_cast<int64_t>(blockIdx.x) * d;
  const float* ri = residual + static_cast<int64_t>(blockIdx.x) * d;
  float* oi = out + static_cast<int64_t>(blockIdx.x) * d;
  float sum = 0.0f;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
    const float v = xi[c] + ri[c];
    xi[c] = v;
    sum += v * v;
  }
  sum = block_sum(sum);
  const float inverse_rms = 1.0f / sqrtf(sum / static_cast<float>(d) + eps);
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) oi[c] = load_weight(weight, bf16, c) * (xi[c] * inverse_rms);
}

}  // namespace

void launch_add_rms_norm(float* x, const float* residual, int64_t n, int64_t d, WeightPtr weight, float eps, float* out,
                         cudaStream_t stream) {
  BM_CHECK(n >= 0 && n <= int64_t{0x7fffffff} && d > 0);
  BM_CHECK(x != nullptr && residual != nullptr && weight.data != nullptr && out != nullptr && out != x);
  if (n == 0) return;
  add_rms_norm_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(x, residual, d, weight.data, weight.bf16, eps,
                                                                         out);
  BM_CUDA_CHECK_LAUNCH();
}

void launch_rms_norm(const float* x, int64_t n, int64_t d, WeightPtr weight, float eps, float* out,
                     cudaStream_t stream) {
  BM_CHECK(n >= 0 && n <= int64_t{0x7fffffff} && d > 0);
  BM_CHECK(x != nullptr && weight.data != nullptr && out != nullptr);
  if (n == 0) return;
  rms_norm_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(x, d, weight.data, weight.bf16, eps, out);
  BM_CUDA_CHECK_LAUNCH();
}

}  // namespace bm::engine::cuda
