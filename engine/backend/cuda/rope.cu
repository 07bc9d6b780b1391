// Rotary embedding in place, rotate-half pairing (element i with i + head_dim/2) as Hugging Face's
// apply_rotary_pos_emb: angle = float(position) * inv_freq[i] in F32, precise sincosf (no fast-math), so the
// result matches the CPU reference to float rounding. One block per token; threads stride over
// (head, pair) so every pair is rotated by exactly one thread.
// rope_table is the same rotation with the angles given per token as cos/sin tables [n, head_dim / 2] (the
// vision tower's 2-D RoPE and the decoder's M-RoPE, whose angles do not come from one position × inv_freq).
#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_util.cuh"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void rope_kernel(float* x, int64_t num_heads, int64_t head_dim, const int32_t* positions,
                            const float* inv_freq) {
  const int64_t t = blockIdx.x;
  const int64_t half = head_dim / 2;
  const float position = static_cast<float>(positions[t]);
  float* row = x + t * num_heads * head_dim;
  for (int64_t index = threadIdx.x; index < num_heads * half; index += blockDim.x) {
    const int64_t h = index / half;
    const int64_t i = index % half;
    float sin_a, cos_a;
    sincosf(position * inv_freq[i], &sin_a, &cos_a);
    float* head = row + h * head_dim;
    const float x1 = head[i];
    const float x2 = head[i + half];
    head[i] = x1 * cos_a - x2 * sin_a;
    head[i + half] = x2 * cos_a + x1 * sin_a;
  }
}

// The same rotation as rope_kernel, the cosine and sine of pair i of token t read from the tables instead of
// computed, so the arithmetic per element is the CPU's rotate_token exactly.
__global__ void rope_table_kernel(float* x, int64_t num_heads, int64_t head_dim, const float* cos_table,
                                  const float* sin_table) {
  const int64_t t = blockIdx.x;
  const int64_t half = head_dim / 2;
  const float* cos_row = cos_table + t * half;
  const float* sin_row = sin_table + t * half;
  float* row = x + t * num_heads * head_dim;
  for (int64_t index = threadIdx.x; index < num_heads * half; index += blockDim.x) {
    const int64_t h = index / half;
    const int64_t i = index % half;
    const float cos_a = cos_row[i];
    const float sin_a = sin_row[i];
    float* head = row + h * head_dim;
    const float x1 = head[i];
    const float x2 = head[i + half];
    head[i] = x1 * cos_a - x2 * sin_a;
    head[i + half] = x2 * cos_a + x1 * sin_a;
  }
}

}  // namespace

void launch_rope_table(float* x, int64_t n, int64_t num_heads, int64_t head_dim, const float* cos, const float* sin,
                       cudaStream_t stream) {
  // One block per token: the grid's x dimension holds up to 2^31 - 1 blocks.
  BM_CHECK(n >= 0 && n <= int64_t{0x7fffffff} && num_heads > 0 && head_dim > 0 && head_dim % 2 == 0);
  BM_CHECK(x != nullptr && cos != nullptr && sin != nullptr);
  if (n == 0) return;
  rope_table_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(x, num_heads, head_dim, cos, sin);
  BM_CUDA_CHECK_LAUNCH();
}

void launch_rope(float* x, int64_t n, int64_t num_heads, int64_t head_dim, const int32_t* positions,
                 const float* inv_freq, cudaStream_t stream) {
  BM_CHECK(n >= 0 && n <= int64_t{0x7fffffff} && num_heads > 0 && head_dim > 0 && head_dim % 2 == 0);
  BM_CHECK(x != nullptr && positions != nullptr && inv_freq != nullptr);
  if (n == 0) return;
  rope_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(x, num_heads, head_dim, positions, inv_freq);
  BM_CUDA_CHECK_LAUNCH();
}

}  // namespace bm::engine::cuda
