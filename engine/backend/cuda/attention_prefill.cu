// FlashAttention-2 style causal prefill over the paged BF16 cache, for head_dim 64 and 128, on mma.sync
// m16n8k16 bf16 tensor-core instructions (warp_mma.cuh) with S, P and O in registers.
//
// Work unit: a token tile is kPrefillTileRows (128) consecutive query tokens of one sequence. Its rows for the
// `group` query heads sharing one KV head are packed token-major (packed row p = token p / group, head p % group),
// and one block of 8 warps takes 128 packed rows of one KV head (GQA packing): the K/V tiles a block loads serve
// every query head of the group, a short query chunk still fills the rows, and a block's causal bound is
// tighter (128 / group tokens). Grid: x = num_heads (KV head x / group, packed block x % group), y = token tile.
// 128 rows per block (rather than 64) halve the K/V bytes read from L2 per FLOP (docs/performance.md).
// A schedule kernel orders the token tiles longest (most visible keys) first, so the long tiles start before the
// short ones fill the tail of the grid.
//
// Per block: Q (rounded to bf16) is staged once through shared memory into registers (ldmatrix). K/V tiles of 64
// keys are gathered from the paged cache through the block table with 16-byte cp.async copies into a two-stage
// buffer (tile i+1 in flight while tile i is computed). Each warp owns 16 packed rows:
//   S = Q Kᵀ (mma, F32 in registers) -> scale and causal mask (only on tiles that cross a row's position) ->
//   online softmax per row (4 lanes per row, shuffles) -> P (bf16) is the S accumulator re-packed as the A operand
//   -> O = O * alpha + P V (mma, F32 in registers).
// Key tiles past a warp's last position are skipped by that warp; past the block's, by the block.
// Shared-memory rows are padded by 16 bytes (row stride 144 / 272 bytes), so the 8 row addresses of each ldmatrix
// phase fall in 8 distinct 16-byte bank groups: conflict-free loads, and conflict-free cp.async stores.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_util.cuh"
#include "engine/backend/cuda/kernels.h"
#include "engine/backend/cuda/warp_mma.cuh"

namespace bm::engine::cuda {
namespace {

constexpr int kRows = kPrefillTileRows;  // packed rows per block (16 per warp); query tokens per token tile
constexpr int kKeys = 64;                // keys per inner tile
constexpr int kWarps = kRows / 16;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockTokens = 16;  // kKvBlockSize (backend.h)
constexpr int kScheduleThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;
static_assert(kRows % 16 == 0 && kKeys == 64, "the fragment mapping assumes 16 rows per warp and 64-key tiles");

struct PrefillParams {
  const float* q;
  const __nv_bfloat16* k_cache;
  const __nv_bfloat16* v_cache;
  int64_t row_size;
  const int32_t* query_starts;
  const int32_t* seq_lens;
  const int32_t* block_tables;
  int64_t max_blocks_per_seq;
  const int32_t* tiles;  // [0] = count, then (sequence, first token within the sequence) pairs
  int32_t num_heads;
  int32_t group;
  float scale_log2;  // softmax scale * log2(e): the kernel works in base 2
  float* out;
};

// A sequence's token tiles as the schedule sees them: tile i covers tokens [64 i, min(64 (i + 1), len)) and its
// last token sees keys up to first_position + min(64 (i + 1), len) (its "key count", strictly increasing in i).
struct SeqTiles {
  int32_t first_position;
  int32_t len;
  int32_t count;  // 0 when the sequence is the split-sequence kernel's
};

__device__ SeqTiles seq_tiles(const int32_t* query_starts, const int32_t* seq_lens, int32_t s) {
  const int32_t len = query_starts[s + 1] - query_starts[s];
  const int32_t count = len >= kPrefillMinQueryLen ? (len + kRows - 1) / kRows : 0;
  return {seq_lens[s] - len, len, count};
}

// How many of a sequence's tiles have a key count above `keys`, and whether one has exactly `keys`.
__device__ int32_t tiles_above(const SeqTiles& t, int32_t keys) {
  const int32_t x = keys - t.first_position;  // the count in the sequence's own token numbering
  if (t.count == 0 || t.len <= x) return 0;
  return t.count - (x < 0 ? 0 : x / kRows);
}
__device__ bool has_tile_at(const SeqTiles& t, int32_t keys) {
  const int32_t x = keys - t.first_position;
  return t.count > 0 && x >= 1 && x <= t.len && (x == t.len || x % kRows == 0);
}

// The tile list, longest tile first: a tile's slot is the number of tiles with more keys, ties broken by
// sequence index, computed in closed form per sequence (O(tiles x sequences) in all, spread over the threads).
__global__ void schedule_kernel(const int32_t* query_starts, const int32_t* seq_lens, int32_t num_seqs,
                                int32_t* tiles) {
  for (int32_t s = threadIdx.x; s < num_seqs; s += blockDim.x) {
    const SeqTiles mine = seq_tiles(query_starts, seq_lens, s);
    for (int32_t i = 0; i < mine.count; ++i) {
      const int32_t keys = mine.first_position + min((i + 1) * kRows, mine.len);
      int32_t slot = 0;
      for (int32_t o = 0; o < num_seqs; ++o) {
        const SeqTiles other = seq_tiles(query_starts, seq_lens, o);
        slot += tiles_above(other, keys) + (o < s && has_tile_at(other, keys) ? 1 : 0);
      }
      tiles[1 + 2 * slot] = s;
      tiles[2 + 2 * slot] = i * kRows;
    }
  }
  if (threadIdx.x == 0) {
    int32_t count = 0;
    for (int32_t s = 0; s < num_seqs; ++s) count += seq_tiles(query_starts, seq_lens, s).count;
    tiles[0] = count;
  }
}

// bf16 elements per shared-memory row: 16 bytes of padding (see the top of the file).
template <int D>
constexpr int kSmemStride = D + 8;

template <int D>
constexpr size_t shared_bytes() {
  // [stage][K | V][key][kSmemStride]; Q (kRows rows) is staged over stage 1 before the loop.
  static_assert(kRows <= 2 * kKeys, "Q is staged in one K/V stage");
  return size_t{4} * kKeys * kSmemStride<D> * sizeof(__nv_bfloat16);
}

template <int D>
__global__ void __launch_bounds__(kThreads) prefill_kernel(PrefillParams p) {
  static_assert(D % 16 == 0 && D <= 128, "head_dim must be a multiple of 16, at most 128");
  constexpr int kStride = kSmemStride<D>;
  constexpr int kTileElems = kKeys * kStride;
  constexpr int kChunks = D / 8;  // 16-byte pieces of a K/V row
  extern __shared__ __align__(128) unsigned char smem[];
  // Stage s: K at kv_s + 2 s kTileElems, V right after it.
  __nv_bfloat16* kv_s = reinterpret_cast<__nv_bfloat16*>(smem);

  if (static_cast<int32_t>(blockIdx.y) >= p.tiles[0]) return;
  const int32_t s = p.tiles[1 + 2 * blockIdx.y];
  const int32_t tile_start = p.tiles[2 + 2 * blockIdx.y];
  const int32_t kv_head = blockIdx.x / p.group;
  const int32_t packed0 = (blockIdx.x % p.group) * kRows;  // first packed row of this block in the token tile
  const int32_t q_start = p.query_starts[s];
  const int32_t q_len = p.query_starts[s + 1] - q_start;
  const int32_t tokens = min(kRows, q_len - tile_start);
  const int32_t packed_rows = tokens * p.group;
  if (packed0 >= packed_rows) return;  // the token tile's last packed block can be partial, later ones empty
  const int32_t valid_rows = min(kRows, packed_rows - packed0);
  const int32_t first_position = p.seq_lens[s] - q_len + tile_start;  // position of the token tile's token 0
  // Keys [0, kv_end) are visible to some row of the block.
  const int32_t kv_end = first_position + (packed0 + valid_rows - 1) / p.group + 1;
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int g = lane / 4;  // fragment row (and row + 8)
  const int t = lane % 4;  // fragment column pair
  const int64_t q_stride = int64_t{p.num_heads} * D;
  const int32_t* table = p.block_tables + int64_t{s} * p.max_blocks_per_seq;
  const int64_t kv_offset = int64_t{kv_head} * D;

  // Gathers keys [kv0, kv0 + 64) of K and V into `stage` through the block table; keys >= kv_end become zeros.
  auto load_kv = [&](int32_t kv0, int stage) {
#pragma unroll
    for (int i = tid; i < kKeys * kChunks; i += kThreads) {
      const int r = i / kChunks;
      const int c = i % kChunks;
      const int32_t pos = kv0 + r;
      const bool valid = pos < kv_end;
      const int64_t slot = valid ? int64_t{table[pos / kBlockTokens]} * kBlockTokens + pos % kBlockTokens : 0;
      const int64_t offset = slot * p.row_size + kv_offset + c * 8;
      __nv_bfloat16* dst = kv_s + 2 * stage * kTileElems + r * kStride + c * 8;
      cp_async_16(dst, p.k_cache + offset, valid);
      cp_async_16(dst + kTileElems, p.v_cache + offset, valid);
    }
  };

  load_kv(0, 0);
  cp_async_commit();

  // Q rows (bf16) staged in stage 1 (K and V: 128 rows), which tile 1's copies only refill after the barrier below.
  __nv_bfloat16* q_s = kv_s + 2 * kTileElems;
  for (int i = tid; i < kRows * (D / 4); i += kThreads) {
    const int r = i / (D / 4);
    const int c = (i % (D / 4)) * 4;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < valid_rows) {
      const int32_t packed = packed0 + r;
      const int32_t head = kv_head * p.group + packed % p.group;
      v = *reinterpret_cast<const float4*>(p.q + (int64_t{q_start} + tile_start + packed / p.group) * q_stride +
                                           int64_t{head} * D + c);
    }
    uint2 pair;
    pair.x = pack_bf16x2(v.x, v.y);
    pair.y = pack_bf16x2(v.z, v.w);
    *reinterpret_cast<uint2*>(q_s + r * kStride + c) = pair;
  }
  __syncthreads();
  uint32_t q_frag[D / 16][4];
  {
    // matrices (rows 0-7 | 8-15) x (columns kk*16 + 0-7 | + 8-15), lanes 8j.. address matrix j's rows
    const __nv_bfloat16* row = q_s + (warp * 16 + lane % 16) * kStride + (lane / 16) * 8;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) ldmatrix_x4(q_frag[kk], row + kk * 16);
  }
  __syncthreads();  // q_s is read: the stage-1 buffer may be refilled

  // This lane's two rows (g, g + 8 of the warp's 16): positions; padding rows copy the block's last row.
  int32_t position[2];
  bool row_valid[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = warp * 16 + g + 8 * h;
    row_valid[h] = r < valid_rows;
    position[h] = first_position + (packed0 + min(r, valid_rows - 1)) / p.group;
  }
  const int warp_first = warp * 16;
  const bool warp_active = warp_first < valid_rows;
  const int32_t warp_min_position = first_position + (packed0 + min(warp_first, valid_rows - 1)) / p.group;
  const int32_t warp_max_position = first_position + (packed0 + min(warp_first + 15, valid_rows - 1)) / p.group;

  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.0f, 0.0f};

  int stage = 0;
  for (int32_t kv0 = 0; kv0 < kv_end; kv0 += kKeys, stage ^= 1) {
    if (kv0 + kKeys < kv_end) load_kv(kv0 + kKeys, stage ^ 1);
    cp_async_commit();   // possibly empty: keeps "all but the newest group" meaning "this tile"
    cp_async_wait<1>();  // this thread's copies of the tile have landed...
    __syncthreads();     // ...and everyone's
    if (warp_active && kv0 <= warp_max_position) {
      const __nv_bfloat16* k_tile = kv_s + 2 * stage * kTileElems;
      const __nv_bfloat16* v_tile = k_tile + kTileElems;
      // S = Q Kᵀ: 8 n-tiles of 8 keys. One ldmatrix_x4 gives B fragments of two n-tiles for one k step:
      // matrices (keys +0-7, dims +0-7), (keys +0-7, dims +8-15), (keys +8-15, dims +0-7), (keys +8-15, +8-15).
      float sc[kKeys / 8][4];
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.0f;
      const __nv_bfloat16* k_row = k_tile + ((lane / 16) * 8 + lane % 8) * kStride + ((lane / 8) % 2) * 8;
#pragma unroll
      for (int j = 0; j < kKeys / 8; j += 2) {
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
          uint32_t kb[4];
          ldmatrix_x4(kb, k_row + j * 8 * kStride + kk * 16);
          const uint32_t b0[2] = {kb[0], kb[1]};
          const uint32_t b1[2] = {kb[2], kb[3]};
          mma_bf16_16816(sc[j], q_frag[kk], b0);
          mma_bf16_16816(sc[j + 1], q_frag[kk], b1);
        }
      }
      // Scale (base 2), causal mask where the tile reaches past the warp's first row, running max.
      const bool masked = kv0 + kKeys - 1 > warp_min_position;
      float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int h = e / 2;
          float x = sc[j][e] * p.scale_log2;
          if (masked && kv0 + j * 8 + 2 * t + (e & 1) > position[h]) x = -INFINITY;
          sc[j][e] = x;
          tile_max[h] = fmaxf(tile_max[h], x);
        }
      }
      float alpha[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        // the 4 lanes of a row (same g) differ in the low two lane bits
        tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 1));
        tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 2));
        // A row sees key 0 in the first tile, so m_new is finite; a later tile can be all masked for a row.
        const float m_new = fmaxf(m[h], tile_max[h]);
        alpha[h] = exp2f(m[h] - m_new);  // 0 on the first tile
        m[h] = m_new;
      }
      // P = exp2(S - m) in place; row sums from the unrounded values; P V uses P rounded to bf16.
      float sum[2] = {0.0f, 0.0f};
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int h = e / 2;
          const float x = sc[j][e] == -INFINITY ? 0.0f : exp2f(sc[j][e] - m[h]);
          sc[j][e] = x;
          sum[h] += x;
        }
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        sum[h] += __shfl_xor_sync(0xffffffffu, sum[h], 1);
        sum[h] += __shfl_xor_sync(0xffffffffu, sum[h], 2);
        l[h] = l[h] * alpha[h] + sum[h];
      }
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        o[n][0] *= alpha[0];
        o[n][1] *= alpha[0];
        o[n][2] *= alpha[1];
        o[n][3] *= alpha[1];
      }
      // O += P V. The S accumulators of n-tiles 2kk and 2kk+1 are exactly the A fragment of k step kk (keys
      // 16kk..16kk+15). V's B fragments come transposed: matrices (keys +0-7, dims +0-7), (keys +8-15, dims
      // +0-7), (keys +0-7, dims +8-15), (keys +8-15, dims +8-15) give two n-tiles of 8 dims.
      const __nv_bfloat16* v_row = v_tile + (((lane / 8) % 2) * 8 + lane % 8) * kStride + (lane / 16) * 8;
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        const uint32_t pa[4] = {pack_bf16x2(sc[2 * kk][0], sc[2 * kk][1]), pack_bf16x2(sc[2 * kk][2], sc[2 * kk][3]),
                                pack_bf16x2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                                pack_bf16x2(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
#pragma unroll
        for (int n = 0; n < D / 8; n += 2) {
          uint32_t vb[4];
          ldmatrix_x4_trans(vb, v_row + kk * 16 * kStride + n * 8);
          const uint32_t b0[2] = {vb[0], vb[1]};
          const uint32_t b1[2] = {vb[2], vb[3]};
          mma_bf16_16816(o[n], pa, b0);
          mma_bf16_16816(o[n + 1], pa, b1);
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before the next iteration's copies refill it
  }

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (!row_valid[h]) continue;
    const int32_t packed = packed0 + warp * 16 + g + 8 * h;
    const int32_t head = kv_head * p.group + packed % p.group;
    float* out_row = p.out + (int64_t{q_start} + tile_start + packed / p.group) * q_stride + int64_t{head} * D;
    const float inverse = 1.0f / l[h];
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
      *reinterpret_cast<float2*>(out_row + n * 8 + 2 * t) =
          make_float2(o[n][2 * h] * inverse, o[n][2 * h + 1] * inverse);
  }
}

template <int D>
void launch_prefill(const PrefillParams& p, unsigned num_tiles, cudaStream_t stream) {
  constexpr size_t bytes = shared_bytes<D>();
  BM_CUDA_CHECK(
      cudaFuncSetAttribute(prefill_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  const dim3 grid(static_cast<unsigned>(p.num_heads), num_tiles);
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
  BM_CHECK(dims.num_heads % dims.num_kv_heads == 0);
  BM_CHECK(cache.row_size == int64_t{dims.num_kv_heads} * dims.head_dim);
  BM_CHECK(batch.num_seqs > 0 && batch.max_blocks_per_seq > 0);
  BM_CHECK(q != nullptr && out != nullptr && cache.k != nullptr && cache.v != nullptr);
  BM_CHECK(batch.query_starts != nullptr && batch.seq_lens != nullptr && batch.block_tables != nullptr);
  BM_CHECK(reinterpret_cast<uintptr_t>(cache.k) % 16 == 0 && reinterpret_cast<uintptr_t>(cache.v) % 16 == 0);
  BM_CHECK(reinterpret_cast<uintptr_t>(q) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 8 == 0);
  if (dims.num_tokens == 0 || batch.max_query_len < kPrefillMinQueryLen) return;
  const int64_t needed = attention_prefill_workspace_ints(dims.num_tokens, batch.num_seqs);
  BM_CHECK(workspace.data != nullptr && workspace.num_ints >= needed);
  // Grid y is the tile list (at most 65535 entries: 4M query tokens in a step).
  const int64_t capacity = (needed - 1) / 2;
  BM_CHECK(capacity <= 65535);
  schedule_kernel<<<1, kScheduleThreads, 0, stream>>>(batch.query_starts, batch.seq_lens, batch.num_seqs,
                                                      workspace.data);
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
  p.scale_log2 = dims.scale * kLog2e;
  p.out = out;
  if (dims.head_dim == 64) {
    launch_prefill<64>(p, static_cast<unsigned>(capacity), stream);
  } else {
    launch_prefill<128>(p, static_cast<unsigned>(capacity), stream);
  }
}

}  // namespace bm::engine::cuda
