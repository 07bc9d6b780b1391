// rope_store_kv: the fused q/k/v GEMM's output into attention's inputs in one launch (Backend::rope_store_kv). Per
// token one block; its threads stride over the work items of the row — q's rotation pairs (written to q_out), k's
// rotation pairs and v's elements (written to the cache row, converted as store_kv converts) — so every element is
// read and written by exactly one thread and no barrier is needed. The rotation is rope.cu's expression on the same
// angles (sincosf of float(position) * inv_freq[i], or the cos/sin tables of M-RoPE), so the result is rope()
// followed by store_kv() to the bit.
#include <cuda_bf16.h>

#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_util.cuh"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ void store_cache_element(void* half, bool bf16, int64_t index, float value) {
  if (bf16)
    static_cast<__nv_bfloat16*>(half)[index] = __float2bfloat16_rn(value);
  else
    static_cast<float*>(half)[index] = value;
}

template <bool kTable>
__global__ void rope_store_kv_kernel(const float* qkv, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                                     RotaryPtr angles, const int32_t* slot_mapping, KvCachePtr cache, float* q_out) {
  const int64_t t = blockIdx.x;
  const int64_t half = head_dim / 2;
  const int64_t q_size = num_heads * head_dim, kv_size = num_kv_heads * head_dim;
  const float* row = qkv + t * (q_size + 2 * kv_size);
  const int64_t slot = slot_mapping[t];
  // A padding row (slot -1) still gets its q (attention reads every row); a slot outside the cache (a caller bug:
  // slots are validated on the host) is skipped as store_kv skips it.
  const bool store = slot >= 0 && slot < cache.num_slots;
  const int64_t q_pairs = num_heads * half, k_pairs = num_kv_heads * half;
  const int64_t items = q_pairs + (store ? k_pairs + kv_size : 0);
  for (int64_t index = threadIdx.x; index < items; index += blockDim.x) {
    if (index >= q_pairs + k_pairs) {  // v: copied into the cache
      const int64_t c = index - q_pairs - k_pairs;
      store_cache_element(cache.v, cache.bf16, slot * kv_size + c, row[q_size + kv_size + c]);
      continue;
    }
    const bool is_q = index < q_pairs;
    const int64_t pair = is_q ? index : index - q_pairs;
    const int64_t h = pair / half;
    const int64_t i = pair % half;
    float sin_a, cos_a;
    if constexpr (kTable) {
      cos_a = angles.cos[t * half + i];
      sin_a = angles.sin[t * half + i];
    } else {
      sincosf(static_cast<float>(angles.positions[t]) * angles.inv_freq[i], &sin_a, &cos_a);
    }
    const float* head = row + (is_q ? 0 : q_size) + h * head_dim;
    const float x1 = head[i];
    const float x2 = head[i + half];
    const float r1 = x1 * cos_a - x2 * sin_a;
    const float r2 = x2 * cos_a + x1 * sin_a;
    if (is_q) {
      float* q = q_out + t * q_size + h * head_dim;
      q[i] = r1;
      q[i + half] = r2;
    } else {
      const int64_t at = slot * kv_size + h * head_dim;
      store_cache_element(cache.k, cache.bf16, at + i, r1);
      store_cache_element(cache.k, cache.bf16, at + i + half, r2);
    }
  }
}

}  // namespace

void launch_rope_store_kv(const float* qkv, int64_t n, int64_t num_heads, int64_t head_dim, const RotaryPtr& angles,
                          const int32_t* slot_mapping, const KvCachePtr& cache, float* q_out, cudaStream_t stream) {
  // One block per token: the grid's x dimension holds up to 2^31 - 1 blocks.
  BM_CHECK(n >= 0 && n <= int64_t{0x7fffffff} && num_heads > 0 && head_dim > 0 && head_dim % 2 == 0);
  BM_CHECK(cache.row_size > 0 && cache.row_size % head_dim == 0 && cache.num_slots >= 0);
  BM_CHECK(qkv != nullptr && slot_mapping != nullptr && q_out != nullptr && cache.k != nullptr && cache.v != nullptr);
  const bool table = angles.cos != nullptr;
  BM_CHECK(table ? angles.sin != nullptr : angles.positions != nullptr && angles.inv_freq != nullptr);
  if (n == 0) return;
  const int64_t num_kv_heads = cache.row_size / head_dim;
  if (table)
    rope_store_kv_kernel<true><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
        qkv, num_heads, num_kv_heads, head_dim, angles, slot_mapping, cache, q_out);
  else
    rope_store_kv_kernel<false><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
        qkv, num_heads, num_kv_heads, head_dim, angles, slot_mapping, cache, q_out);
  BM_CUDA_CHECK_LAUNCH();
}

}  // namespace bm::engine::cuda
