// Flash-attention style causal prefill over the paged BF16 cache on tensor cores (WMMA bf16 m16n16k16, F32
// accumulators), for head_dim 64 and 128.
//
// A tile is kPrefillTileRows (64) consecutive query rows of one sequence; one block (4 warps, 16 rows each)
// handles a (tile, query head). A one-thread schedule kernel first turns query_starts into the list of tiles
// of sequences whose query length is >= kPrefillMinQueryLen (the others are the split-sequence kernel's), so
// the grid needs no host copy of the metadata. The block loops over the visible keys in tiles of 64:
//   S = Q Kᵀ (WMMA, F32) -> scale, causal mask, online softmax per row (two lanes per row) -> P (bf16, written
//   over S) -> O = O * alpha + P V (WMMA, O kept in shared memory as F32).
// Q is rounded to bf16 for the tensor cores (as flash-attention does); K/V are bf16 in the cache already.
#include <cuda_bf16.h>
#include <mma.h>

#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_util.cuh"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kRows = kPrefillTileRows;  // query rows per block
constexpr int kKeys = 64;                // keys per inner tile
constexpr int kWarps = kRows / 16;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockTokens = 16;  // kKvBlockSize (backend.h)
static_assert(kRows == 64 && kKeys == 64, "the softmax lane mapping assumes 64 x 64 score tiles");

struct PrefillParams {
  const float* q;
  const __nv_bfloat16* k_cache;
  const __nv_bfloat16* v_cache;
  int64_t row_size;
  const int32_t* query_starts;
  const int32_t* seq_lens;
  const int32_t* block_tables;
  int64_t max_blocks_per_seq;
  const int32_t* tiles;  // [0] = count, then (sequence, first row within the sequence) pairs
  int32_t num_heads;
  int32_t group;
  float scale;
  float* out;
};

__global__ void schedule_kernel(const int32_t* query_starts, int32_t num_seqs, int32_t* tiles, int64_t capacity) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  int64_t count = 0;
  for (int32_t s = 0; s < num_seqs; ++s) {
    const int32_t len = query_starts[s + 1] - query_starts[s];
    if (len < kPrefillMinQueryLen) continue;
    for (int32_t start = 0; start < len && count < capacity; start += kRows, ++count) {
      tiles[1 + 2 * count] = s;
      tiles[2 + 2 * count] = start;
    }
  }
  tiles[0] = static_cast<int32_t>(count);
}

template <int D>
constexpr size_t shared_bytes() {
  return size_t{2} * kKeys * D * sizeof(__nv_bfloat16)  // K, V tiles
         + size_t{kRows} * kKeys * sizeof(float)        // S (P aliases it)
         + size_t{kRows} * D * sizeof(float);           // O
}

template <int D>
__global__ void __launch_bounds__(kThreads) prefill_kernel(PrefillParams p) {
  static_assert(D % 16 == 0, "head_dim must be a multiple of 16");
  constexpr int kChunksPerRow = D * 2 / 16;  // 16-byte pieces of a K/V row
  extern __shared__ __align__(128) unsigned char smem[];
  __nv_bfloat16* k_s = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* v_s = k_s + kKeys * D;
  float* s_s = reinterpret_cast<float*>(v_s + kKeys * D);
  __nv_bfloat16* p_s = reinterpret_cast<__nv_bfloat16*>(s_s);  // row r at p_s + r * 2 * kKeys
  constexpr int kPStride = 2 * kKeys;
  float* o_s = s_s + kRows * kKeys;

  if (static_cast<int32_t>(blockIdx.x) >= p.tiles[0]) return;
  const int32_t s = p.tiles[1 + 2 * blockIdx.x];
  const int32_t tile_start = p.tiles[2 + 2 * blockIdx.x];
  const int32_t h = blockIdx.y;
  const int32_t kv_head = h / p.group;
  const int32_t q_start = p.query_starts[s];
  const int32_t q_len = p.query_starts[s + 1] - q_start;
  const int32_t first_position = p.seq_lens[s] - q_len;
  const int32_t rows = min(kRows, q_len - tile_start);
  const int32_t kv_end = first_position + tile_start + rows;  // keys [0, kv_end) are visible to some row
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int row0 = warp * 16;
  const int64_t q_stride = int64_t{p.num_heads} * D;

  // Q tile -> bf16 (staged in k_s) -> fragments; O = 0.
  for (int i = tid; i < kRows * D; i += kThreads) {
    const int r = i / D;
    const int c = i % D;
    const float value = r < rows ? p.q[(int64_t{q_start} + tile_start + r) * q_stride + int64_t{h} * D + c] : 0.0f;
    k_s[i] = __float2bfloat16_rn(value);
  }
  for (int i = tid; i < kRows * D; i += kThreads) o_s[i] = 0.0f;
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> q_frag[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) wmma::load_matrix_sync(q_frag[kk], k_s + row0 * D + kk * 16, D);
  __syncthreads();

  // Softmax state: lanes 2r and 2r + 1 share row row0 + r, each taking half of the 64 keys.
  const int my_row = row0 + lane / 2;
  const int half = lane % 2;
  const int32_t my_position = first_position + tile_start + min(my_row, rows - 1);  // padding rows copy the last
  float m = -INFINITY;
  float l = 0.0f;
  const int32_t* table = p.block_tables + int64_t{s} * p.max_blocks_per_seq;
  const int64_t kv_offset = int64_t{kv_head} * D;

  for (int32_t kv0 = 0; kv0 < kv_end; kv0 += kKeys) {
    for (int i = tid; i < kKeys * kChunksPerRow; i += kThreads) {
      const int r = i / kChunksPerRow;
      const int c = i % kChunksPerRow;
      const int32_t pos = kv0 + r;
      uint4 k_piece = make_uint4(0, 0, 0, 0);
      uint4 v_piece = make_uint4(0, 0, 0, 0);
      if (pos < kv_end) {
        const int64_t slot = int64_t{table[pos / kBlockTokens]} * kBlockTokens + pos % kBlockTokens;
        const int64_t offset = slot * p.row_size + kv_offset + c * 8;
        k_piece = *reinterpret_cast<const uint4*>(p.k_cache + offset);
        v_piece = *reinterpret_cast<const uint4*>(p.v_cache + offset);
      }
      reinterpret_cast<uint4*>(k_s)[i] = k_piece;
      reinterpret_cast<uint4*>(v_s)[i] = v_piece;
    }
    __syncthreads();

    // S = Q Kᵀ for this warp's 16 rows.
#pragma unroll
    for (int n = 0; n < kKeys / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> k_frag;
        wmma::load_matrix_sync(k_frag, k_s + n * 16 * D + kk * 16, D);
        wmma::mma_sync(acc, q_frag[kk], k_frag, acc);
      }
      wmma::store_matrix_sync(s_s + row0 * kKeys + n * 16, acc, kKeys, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax over my half row.
    float values[32];
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      const int c = half * 32 + j;
      const bool visible = kv0 + c <= my_position;
      values[j] = visible ? s_s[my_row * kKeys + c] * p.scale : -INFINITY;
      tile_max = fmaxf(tile_max, values[j]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    const float m_new = fmaxf(m, tile_max);  // finite: key 0 is visible to every row in the first tile
    const float alpha = expf(m - m_new);     // 0 on the first tile
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      values[j] = values[j] == -INFINITY ? 0.0f : expf(values[j] - m_new);
      sum += values[j];
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * alpha + sum;
    m = m_new;
    __syncwarp();  // every lane has read its S values before P overwrites them
#pragma unroll
    for (int j = 0; j < 32; ++j) p_s[my_row * kPStride + half * 32 + j] = __float2bfloat16_rn(values[j]);
    float* o_row = o_s + my_row * D + half * (D / 2);
#pragma unroll
    for (int c = 0; c < D / 2; ++c) o_row[c] *= alpha;
    __syncwarp();

    // O += P V for this warp's 16 rows.
#pragma unroll
    for (int n = 0; n < D / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, o_s + row0 * D + n * 16, D, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> p_frag;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> v_frag;
        wmma::load_matrix_sync(p_frag, p_s + row0 * kPStride + kk * 16, kPStride);
        wmma::load_matrix_sync(v_frag, v_s + kk * 16 * D + n * 16, D);
        wmma::mma_sync(acc, p_frag, v_frag, acc);
      }
      wmma::store_matrix_sync(o_s + row0 * D + n * 16, acc, D, wmma::mem_row_major);
    }
    __syncthreads();  // the next key tile overwrites k_s / v_s
  }

  if (my_row < rows) {
    const float inverse = 1.0f / l;
    float* out_row = p.out + (int64_t{q_start} + tile_start + my_row) * q_stride + int64_t{h} * D + half * (D / 2);
    const float* o_row = o_s + my_row * D + half * (D / 2);
    for (int c = 0; c < D / 2; ++c) out_row[c] = o_row[c] * inverse;
  }
}

template <int D>
void launch_prefill(const PrefillParams& p, unsigned num_tiles, cudaStream_t stream) {
  constexpr size_t bytes = shared_bytes<D>();
  BM_CUDA_CHECK(
      cudaFuncSetAttribute(prefill_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  const dim3 grid(num_tiles, static_cast<unsigned>(p.num_heads));
  prefill_kernel<D><<<grid, kThreads, bytes, stream>>>(p);
  BM_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool prefill_kernel_supports(bool bf16_cache, int32_t head_dim) {
  return bf16_cache && (head_dim == 64 || head_dim == 128);
}

int64_t attention_prefill_workspace_ints(int32_t num_tokens, int32_t num_seqs) {
  return 1 + 2 * (ceil_div(num_tokens, kRows) + num_seqs);
}

void launch_attention_prefill(const float* q, const KvCachePtr& cache, const AttentionBatchPtr& batch,
                              const AttentionDims& dims, const PrefillWorkspace& workspace, float* out,
                              cudaStream_t stream) {
  BM_CHECK(prefill_kernel_supports(cache.bf16, dims.head_dim));
  BM_CHECK(dims.num_tokens >= 0 && dims.num_heads > 0 && dims.num_kv_heads > 0);
  BM_CHECK(dims.num_heads % dims.num_kv_heads == 0 && dims.num_heads <= 65535);
  BM_CHECK(cache.row_size == int64_t{dims.num_kv_heads} * dims.head_dim);
  BM_CHECK(batch.num_seqs > 0 && batch.max_blocks_per_seq > 0);
  BM_CHECK(q != nullptr && out != nullptr && cache.k != nullptr && cache.v != nullptr);
  BM_CHECK(batch.query_starts != nullptr && batch.seq_lens != nullptr && batch.block_tables != nullptr);
  BM_CHECK(reinterpret_cast<uintptr_t>(cache.k) % 16 == 0 && reinterpret_cast<uintptr_t>(cache.v) % 16 == 0);
  if (dims.num_tokens == 0 || batch.max_query_len < kPrefillMinQueryLen) return;
  const int64_t needed = attention_prefill_workspace_ints(dims.num_tokens, batch.num_seqs);
  BM_CHECK(workspace.data != nullptr && workspace.num_ints >= needed);
  const int64_t capacity = (needed - 1) / 2;
  BM_CHECK(capacity <= int64_t{0x7fffffff});
  schedule_kernel<<<1, 32, 0, stream>>>(batch.query_starts, batch.num_seqs, workspace.data, capacity);
  BM_CUDA_CHECK_LAUNCH();
  PrefillParams p{};
  p.q = q;
  p.k_cache = static_cast<const __nv_bfloat16*>(cache.k);
  p.v_cache = static_cast<const __nv_bfloat16*>(cache.v);
  p.row_size = cache.row_size;
  p.query_starts = batch.query_starts;
  p.seq_lens = batch.seq_lens;
  p.block_tables = batch.block_tables;
  p.max_blocks_per_seq = batch.max_blocks_per_seq;
  p.tiles = workspace.data;
  p.num_heads = dims.num_heads;
  p.group = dims.num_heads / dims.num_kv_heads;
  p.scale = dims.scale;
  p.out = out;
  if (dims.head_dim == 64) {
    launch_prefill<64>(p, static_cast<unsigned>(capacity), stream);
  } else {
    launch_prefill<128>(p, static_cast<unsigned>(capacity), stream);
  }
}

}  // namespace bm::engine::cuda
