// store_kv: the new tokens' K and V rows (F32) into their cache slots, converted to the cache's dtype (BF16
// with round-to-nearest-even, as the CPU reference). One block per token; a slot outside the cache (a caller
// bug: slots are validated on the host) is skipped rather than written out of bounds.
#include <cuda_bf16.h>

#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_util.cuh"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void store_kv_kernel(const float* k, const float* v, const int32_t* slot_mapping, void* k_cache,
                                void* v_cache, bool bf16, int64_t num_slots, int64_t row_size) {
  const int64_t t = blockIdx.x;
  const int64_t slot = slot_mapping[t];
  if (slot < 0 || slot >= num_slots) return;
  const float* k_row = k + t * row_size;
  const float* v_row = v + t * row_size;
  if (bf16) {
    __nv_bfloat16* k_dst = static_cast<__nv_bfloat16*>(k_cache) + slot * row_size;
    __nv_bfloat16* v_dst = static_cast<__nv_bfloat16*>(v_cache) + slot * row_size;
    for (int64_t c = threadIdx.x; c < row_size; c += blockDim.x) {
      k_dst[c] = __float2bfloat16_rn(k_row[c]);
      v_dst[c] = __float2bfloat16_rn(v_row[c]);
    }
  } else {
    float* k_dst = static_cast<float*>(k_cache) + slot * row_size;
    float* v_dst = static_cast<float*>(v_cache) + slot * row_size;
    for (int64_t c = threadIdx.x; c < row_size; c += blockDim.x) {
      k_dst[c] = k_row[c];
      v_dst[c] = v_row[c];
    }
  }
}

}  // namespace

void launch_store_kv(const float* k, const float* v, int64_t n, const int32_t* slot_mapping, const KvCachePtr& cache,
                     cudaStream_t stream) {
  BM_CHECK(n >= 0 && n <= int64_t{0x7fffffff} && cache.row_size > 0 && cache.num_slots >= 0);
  BM_CHECK(k != nullptr && v != nullptr && slot_mapping != nullptr && cache.k != nullptr && cache.v != nullptr);
  if (n == 0) return;
  store_kv_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(k, v, slot_mapping, cache.k, cache.v, cache.bf16,
                                                                     cache.num_slots, cache.row_size);
  BM_CUDA_CHECK_LAUNCH();
}

}  // namespace bm::engine::cuda
