// Split-sequence paged attention ("flash decoding"), for decode steps, short query tails, and every row where
// the tensor-core prefill kernel does not apply (F32 cache, other head sizes). Bandwidth-bound: at 64 sequences
// the kernel reads 268 MB of K/V per Qwen2.5-7B layer at 2k context and does ~7 FLOPs per byte, so what matters
// is how K and V are read.
//
// Grid: x = query row, y = (KV head, slice of up to kMaxGroup of its query heads), z = split slot. A block owns
// the query heads that share one KV head (grouped-query attention), so each K and V row is read once for all of
// them (once per GQA group).
//
// Row groups. A lane owns 8 consecutive elements of the head dimension, so one K or V row is read by
// L = head_dim / 8 lanes (rounded up to a power of two: 8 for head_dim 64, 16 for 128, 32 for 256) with one
// 16-byte load each (two for an F32 cache): a 256-byte BF16 row is one coalesced transaction of 16 lanes, and a
// warp reads 32 / L rows per load instruction. The L lanes of a row form a "row group"; a group walks its own
// tiles of 4 consecutive positions (2 at 8 heads, for registers; one paged block holds whole tiles, so a tile
// costs one block-table lookup) with its own online softmax (running
// max m, sum l and the P·V accumulator for its 8 dimensions of every head, all in registers), so the main loop
// has no block barrier and no shared memory: the only cross-lane traffic is the xor-shuffle that sums a row's
// dot product over its L lanes. Each tile (software-pipelined in registers): the tile's V rows are loaded, the
// scores computed from its K rows (loaded during the previous tile; q is held in registers, scores in the log2
// domain: scale · log2(e)), then the next tile's K rows are loaded into the freed registers and stay in flight
// while the softmax update (once per tile: the accumulators are rescaled once per tile, not per row) and P·V
// run. So V is in flight during the scores and K during the softmax and P·V.
//
// Splits. The host sizes the grid for the launch's context bound (a recorded decode graph passes its bucket's
// bound, not the step's lengths): max_splits slots per (row, head group), enough for about kTargetBlocksPerSm
// blocks per SM. The block itself derives the split actually used from the row's real visible length: as many
// splits of at least kMinSplitLen positions as that length allows, up to max_splits; the slots past them exit at
// once. So a 1k sequence in a 32k graph bucket gets the same splits as it would eagerly, and the graph stays
// valid for any lengths. A row that needs one split writes its normalised output directly; otherwise each split
// merges its row groups and writes (unnormalised output, max, sum) and combine_kernel merges the splits
// (log-sum-exp), deriving the same split count from the same length.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_util.cuh"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxGroup = 8;  // query heads per block (Qwen2.5: 5-7, Llama-3 8B: 4)
constexpr int kMaxHeadDim = 256;
constexpr int kElemsPerLane = 8;  // one 16-byte BF16 load
constexpr int kBlockTokens = 16;  // kKvBlockSize (backend.h)
constexpr int kTile = 4;          // split alignment and the most positions per row-group tile; divides kBlockTokens
constexpr int kMinSplitLen = 64;  // positions: a split's reads (>= 32 KB at 7B) dwarf its partial write (3.6 KB)
constexpr int kTargetBlocksPerSm = 4;
constexpr int kMaxSplits = 1024;
constexpr float kLog2e = 1.4426950408889634f;
static_assert(kBlockTokens % kTile == 0, "a tile must not straddle a paged block");

struct SplitPlan {
  int32_t heads_per_block = 1;
  int32_t subgroups = 1;
  int32_t max_splits = 1;
  int32_t lanes_per_row = 1;
};

int32_t lanes_per_row(int32_t head_dim) {
  int32_t lanes = 1;
  while (lanes * kElemsPerLane < head_dim) lanes *= 2;
  return lanes;
}

// The grid's split slots: enough (row, head group, split) blocks for about kTargetBlocksPerSm per SM, never more
// than the context bound can fill with kMinSplitLen positions each. Depends only on the launch shape and the
// bound, so a recorded graph's grid and workspace stay valid for every step it replays.
SplitPlan plan_splits(const AttentionDims& dims, int32_t max_seq_len, int32_t num_sms) {
  SplitPlan plan;
  const int32_t group = dims.num_heads / dims.num_kv_heads;
  plan.heads_per_block = std::min(group, kMaxGroup);
  plan.subgroups = static_cast<int32_t>(ceil_div(group, plan.heads_per_block));
  plan.lanes_per_row = lanes_per_row(dims.head_dim);
  const int64_t blocks = int64_t{dims.num_tokens} * dims.num_kv_heads * plan.subgroups;
  const int64_t target = int64_t{kTargetBlocksPerSm} * std::max(num_sms, 1);
  const int64_t wanted = blocks >= target ? 1 : ceil_div(target, std::max<int64_t>(blocks, 1));
  const int64_t fillable = ceil_div(std::max(max_seq_len, 1), kMinSplitLen);
  plan.max_splits = static_cast<int32_t>(std::clamp<int64_t>(std::min(wanted, fillable), 1, kMaxSplits));
  return plan;
}

struct DecodeParams {
  const float* q;
  const void* k_cache;
  const void* v_cache;
  int64_t row_size;
  const int32_t* query_starts;
  const int32_t* seq_lens;
  const int32_t* block_tables;
  int64_t max_blocks_per_seq;
  int32_t num_seqs;
  int32_t num_heads;
  int32_t head_dim;
  int32_t group;
  int32_t heads_per_block;
  int32_t subgroups;
  int32_t max_splits;
  int32_t lanes_per_row;
  float scale_log2;  // softmax scale · log2(e): scores are kept in the log2 domain (exp2f)
  bool only_short_queries;
  float* out;
  float* partial_out;  // [rows, heads, max_splits, head_dim] when max_splits > 1
  float* partial_ml;   // [rows, heads, max_splits, 2]: max (log2 domain), sum
};

// Which sequence row t belongs to and how many positions it sees (0 for a row of a sequence shorter than its
// query); false when the row is not this kernel's.
__device__ __forceinline__ bool locate_row(const DecodeParams& p, int32_t t, int32_t& s, int32_t& visible) {
  s = sequence_of_row(p.query_starts, p.num_seqs, t);
  const int32_t q_start = p.query_starts[s];
  const int32_t q_len = p.query_starts[s + 1] - q_start;
  if (p.only_short_queries && q_len >= kPrefillMinQueryLen) return false;
  visible = max(p.seq_lens[s] - q_len + (t - q_start) + 1, 0);
  return true;
}

// The splits a row of `visible` (>= 1) positions uses: as many as the length fills with kMinSplitLen positions,
// at most max_splits, each a whole number of tiles. Both kernels call it with the same arguments.
struct RowSplits {
  int32_t count;
  int32_t len;
};
__device__ __forceinline__ RowSplits row_splits(int32_t visible, int32_t max_splits) {
  int32_t count = min(max_splits, max((visible + kMinSplitLen - 1) / kMinSplitLen, 1));
  const int32_t per_split = (visible + count - 1) / count;
  const int32_t len = (per_split + kTile - 1) / kTile * kTile;
  count = (visible + len - 1) / len;
  return {count, len};
}

// The 8 elements a lane owns in a K or V row: one 16-byte load for BF16, two for F32.
struct Chunk {
  uint4 a, b;
};
template <typename Elem>
__device__ __forceinline__ Chunk load_chunk(const Elem* src) {
  Chunk c;
  c.a = *reinterpret_cast<const uint4*>(src);
  if constexpr (std::is_same_v<Elem, float>) {
    c.b = *reinterpret_cast<const uint4*>(src + 4);
  } else {
    c.b = make_uint4(0, 0, 0, 0);
  }
  return c;
}
template <typename Elem>
__device__ __forceinline__ void widen(const Chunk& c, float* f) {
  if constexpr (std::is_same_v<Elem, float>) {
    const uint32_t words[8] = {c.a.x, c.a.y, c.a.z, c.a.w, c.b.x, c.b.y, c.b.z, c.b.w};
#pragma unroll
    for (int j = 0; j < 8; ++j) f[j] = __uint_as_float(words[j]);
  } else {
    const uint32_t words[4] = {c.a.x, c.a.y, c.a.z, c.a.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      f[2 * j] = __uint_as_float(words[j] << 16);
      f[2 * j + 1] = __uint_as_float(words[j] & 0xffff0000u);
    }
  }
}

// Sum over the `lanes` (a power of two <= 32) aligned lanes of a row group; every lane of the group gets it.
__device__ __forceinline__ float group_sum(float v, int32_t lanes) {
  for (int32_t offset = lanes / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// kHeads: the compile-time bound on the block's query heads (registers for q and the accumulators); the block's
// heads_per_block <= kHeads. Elem: uint16_t (BF16 bits) or float, the cache's element type.
// No minimum of resident blocks is asked of the register allocator: 3 per SM (<= 170 registers) spills at 4 heads
// on sm_80/89, and 8 heads need 238 registers anyway.
template <typename Elem, int kHeads>
__global__ void __launch_bounds__(kThreads) decode_kernel(DecodeParams p) {
  // Positions per tile: 4, but 2 at 8 heads, where q and the accumulators alone take 128 registers and a 4-row
  // tile's K, V and scores would spill (sm_90a: 255 registers and 116 bytes of spills with 4 rows).
  constexpr int kRows = kHeads >= 8 ? 2 : kTile;
  static_assert(kTile % kRows == 0, "tiles must tile a split");
  // The row groups' results, merged at the end (the only shared memory): acc for [head][group * D + d].
  __shared__ float acc_s[kHeads][kThreads * kElemsPerLane];
  __shared__ float m_s[kHeads][kThreads], l_s[kHeads][kThreads];

  const int32_t t = blockIdx.x;
  const int32_t kv_head = blockIdx.y / p.subgroups;
  const int32_t head0 = kv_head * p.group + (blockIdx.y % p.subgroups) * p.heads_per_block;
  const int32_t nh = min(p.heads_per_block, kv_head * p.group + p.group - head0);
  const int32_t split = blockIdx.z;
  const int32_t D = p.head_dim;
  const int32_t tid = threadIdx.x;

  int32_t s = 0, visible = 0;
  if (!locate_row(p, t, s, visible)) return;
  if (visible == 0) {  // nothing to attend to (not a valid batch; defined output instead of stale memory)
    if (split == 0) {
      for (int32_t i = tid; i < nh * D; i += kThreads) p.out[(int64_t{t} * p.num_heads + head0) * D + i] = 0.0f;
    }
    return;
  }
  const RowSplits splits = row_splits(visible, p.max_splits);
  if (split >= splits.count) return;  // a slot this row's length does not need (the grid is sized for the bound)
  const int32_t begin = split * splits.len;
  const int32_t end = min(visible, begin + splits.len);

  const int32_t L = p.lanes_per_row;
  const int32_t groups = kThreads / L;
  const int32_t group = tid / L;
  const int32_t dim0 = (tid % L) * kElemsPerLane;
  const bool has_dims = dim0 < D;  // false in the surplus lanes when head_dim / 8 is not a power of two

  float q[kHeads][kElemsPerLane];
  float acc[kHeads][kElemsPerLane];
  float m[kHeads], l[kHeads];
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
    m[h] = -INFINITY;
    l[h] = 0.0f;
#pragma unroll
    for (int j = 0; j < kElemsPerLane; ++j) {
      acc[h][j] = 0.0f;
      q[h][j] = h < nh && has_dims ? p.q[(int64_t{t} * p.num_heads + head0 + h) * D + dim0 + j] : 0.0f;
    }
  }

  const int32_t* table = p.block_tables + int64_t{s} * p.max_blocks_per_seq;
  const int64_t lane_offset = int64_t{kv_head} * D + dim0;
  const Elem* k_cache = static_cast<const Elem*>(p.k_cache) + lane_offset;
  const Elem* v_cache = static_cast<const Elem*>(p.v_cache) + lane_offset;
  // Tile i of this group starts at begin + (i * groups + group) * kRows. The loop runs as many tiles as the
  // warp's first group has, so every lane of a warp reaches every shuffle (a later group's surplus tiles are
  // empty: no loads, no softmax update).
  const int32_t warp_first = begin + (tid / 32) * (32 / L) * kRows;
  const int32_t tiles = warp_first < end ? (end - warp_first + groups * kRows - 1) / (groups * kRows) : 0;
  const auto tile_start = [&](int32_t i) { return begin + (i * groups + group) * kRows; };
  const auto tile_slot = [&](int32_t start) {
    return int64_t{table[start / kBlockTokens]} * kBlockTokens + start % kBlockTokens;
  };

  Chunk k_tile[kRows], v_tile[kRows];
  if (tiles > 0) {
    const int32_t start = tile_start(0);
    const int32_t rows = min(max(end - start, 0), kRows);
    const int64_t slot = rows > 0 ? tile_slot(start) : 0;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (r < rows && has_dims) k_tile[r] = load_chunk(k_cache + (slot + r) * p.row_size);
    }
  }
  for (int32_t i = 0; i < tiles; ++i) {
    const int32_t start = tile_start(i);
    const int32_t rows = min(max(end - start, 0), kRows);
    const int64_t slot = rows > 0 ? tile_slot(start) : 0;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (r < rows && has_dims) v_tile[r] = load_chunk(v_cache + (slot + r) * p.row_size);
    }
    // Scores (log2 domain) of the tile's rows for every head; -inf past the split's end.
    float score[kRows][kHeads];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float k[kElemsPerLane];
      if (r < rows && has_dims) {
        widen<Elem>(k_tile[r], k);
      } else {
#pragma unroll
        for (int j = 0; j < kElemsPerLane; ++j) k[j] = 0.0f;
      }
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
        if (h < nh) {  // uniform over the block: every lane shuffles or none does
          float dot = 0.0f;
#pragma unroll
          for (int j = 0; j < kElemsPerLane; ++j) dot += q[h][j] * k[j];
          dot = group_sum(dot, L);
          score[r][h] = r < rows ? dot * p.scale_log2 : -INFINITY;
        }
      }
    }

    // Prefetch: this tile's K rows are consumed, so the next tile's go into their registers and are in flight
    // while this tile's softmax and P·V run (this tile's V rows were in flight during the scores).
    const int32_t next_start = tile_start(i + 1);
    const int32_t next_rows = i + 1 < tiles ? min(max(end - next_start, 0), kRows) : 0;
    const int64_t next_slot = next_rows > 0 ? tile_slot(next_start) : 0;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (r < next_rows && has_dims) k_tile[r] = load_chunk(k_cache + (next_slot + r) * p.row_size);
    }

    if (rows > 0) {  // online softmax, once per tile; then P·V
      float prob[kRows][kHeads];
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
        if (h < nh) {
          float tile_max = score[0][h];
#pragma unroll
          for (int r = 1; r < kRows; ++r) tile_max = fmaxf(tile_max, score[r][h]);
          const float m_new = fmaxf(m[h], tile_max);
          const float alpha = exp2f(m[h] - m_new);  // 0 on the group's first tile (m = -inf)
          float sum = 0.0f;
#pragma unroll
          for (int r = 0; r < kRows; ++r) {
            prob[r][h] = exp2f(score[r][h] - m_new);  // 0 for the rows past the end
            sum += prob[r][h];
          }
          l[h] = l[h] * alpha + sum;
          m[h] = m_new;
#pragma unroll
          for (int j = 0; j < kElemsPerLane; ++j) acc[h][j] *= alpha;
        }
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r < rows && has_dims) {
          float v[kElemsPerLane];
          widen<Elem>(v_tile[r], v);
#pragma unroll
          for (int h = 0; h < kHeads; ++h) {
            if (h < nh) {
#pragma unroll
              for (int j = 0; j < kElemsPerLane; ++j) acc[h][j] += prob[r][h] * v[j];
            }
          }
        }
      }
    }
  }

  // Merge the row groups (log-sum-exp): a group that had no tile has m = -inf, l = 0 and weighs nothing; group 0
  // always has the split's first position, so the merged max is finite.
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
    if (h < nh) {
      if (has_dims) {
#pragma unroll
        for (int j = 0; j < kElemsPerLane; ++j) acc_s[h][group * D + dim0 + j] = acc[h][j];
      }
      if (tid % L == 0) {
        m_s[h][group] = m[h];
        l_s[h][group] = l[h];
      }
    }
  }
  __syncthreads();
  for (int32_t i = tid; i < nh * D; i += kThreads) {
    const int32_t h = i / D;
    const int32_t d = i % D;
    float m_max = -INFINITY;
    for (int32_t g = 0; g < groups; ++g) m_max = fmaxf(m_max, m_s[h][g]);
    float sum = 0.0f, o = 0.0f;
    for (int32_t g = 0; g < groups; ++g) {
      if (m_s[h][g] == -INFINITY) continue;
      const float w = exp2f(m_s[h][g] - m_max);
      sum += l_s[h][g] * w;
      o += acc_s[h][g * D + d] * w;
    }
    const int64_t head_row = int64_t{t} * p.num_heads + head0 + h;
    if (splits.count == 1) {
      p.out[head_row * D + d] = o / sum;
    } else {
      const int64_t base = head_row * p.max_splits + split;
      p.partial_out[base * D + d] = o;
      if (d == 0) {
        p.partial_ml[2 * base] = m_max;
        p.partial_ml[2 * base + 1] = sum;
      }
    }
  }
}

// Merges the splits of one (row, head): out = sum_i o_i 2^(m_i - M) / sum_i l_i 2^(m_i - M). Rows whose length
// needed one split were written by decode_kernel.
__global__ void combine_kernel(DecodeParams p) {
  const int32_t t = blockIdx.x;
  const int32_t h = blockIdx.y;
  int32_t s = 0, visible = 0;
  if (!locate_row(p, t, s, visible) || visible == 0) return;
  const int32_t used = row_splits(visible, p.max_splits).count;
  if (used == 1) return;
  const int64_t head_row = int64_t{t} * p.num_heads + h;
  const float* ml = p.partial_ml + head_row * p.max_splits * 2;
  float m = -INFINITY;
  for (int32_t i = 0; i < used; ++i) m = fmaxf(m, ml[2 * i]);
  float l = 0.0f;
  for (int32_t i = 0; i < used; ++i) l += ml[2 * i + 1] * exp2f(ml[2 * i] - m);
  for (int32_t d = threadIdx.x; d < p.head_dim; d += blockDim.x) {
    float o = 0.0f;
    for (int32_t i = 0; i < used; ++i) {
      o += p.partial_out[(head_row * p.max_splits + i) * p.head_dim + d] * exp2f(ml[2 * i] - m);
    }
    p.out[head_row * p.head_dim + d] = o / l;
  }
}

using DecodeKernel = void (*)(DecodeParams);
// [F32 cache, BF16 cache][heads bound 1, 2, 4, 8]
constexpr DecodeKernel kDecodeKernels[2][4] = {
    {decode_kernel<float, 1>, decode_kernel<float, 2>, decode_kernel<float, 4>, decode_kernel<float, 8>},
    {decode_kernel<uint16_t, 1>, decode_kernel<uint16_t, 2>, decode_kernel<uint16_t, 4>, decode_kernel<uint16_t, 8>}};

int heads_bound_index(int32_t heads_per_block) {
  int index = 0;
  while ((1 << index) < heads_per_block) ++index;
  return index;
}

}  // namespace

int64_t attention_decode_workspace_floats(const AttentionDims& dims, int32_t max_seq_len, int32_t num_sms) {
  BM_CHECK(dims.num_kv_heads > 0 && dims.num_heads % dims.num_kv_heads == 0);
  const SplitPlan plan = plan_splits(dims, max_seq_len, num_sms);
  if (plan.max_splits == 1) return 0;
  return int64_t{dims.num_tokens} * dims.num_heads * plan.max_splits * (dims.head_dim + 2);
}

void launch_attention_decode(const float* q, const KvCachePtr& cache, const AttentionBatchPtr& batch,
                             const AttentionDims& dims, bool only_short_queries, int32_t num_sms,
                             const AttentionWorkspace& workspace, float* out, cudaStream_t stream) {
  BM_CHECK(dims.num_tokens >= 0 && dims.num_heads > 0 && dims.num_kv_heads > 0);
  BM_CHECK(dims.num_heads % dims.num_kv_heads == 0);
  BM_CHECK(dims.head_dim > 0 && dims.head_dim <= kMaxHeadDim && dims.head_dim % kElemsPerLane == 0);
  BM_CHECK(cache.row_size == int64_t{dims.num_kv_heads} * dims.head_dim);
  BM_CHECK(batch.num_seqs > 0 && batch.max_blocks_per_seq > 0);
  BM_CHECK(batch.max_seq_len > 0 && batch.max_seq_len <= batch.max_blocks_per_seq * kBlockTokens);
  BM_CHECK(q != nullptr && out != nullptr && cache.k != nullptr && cache.v != nullptr);
  BM_CHECK(batch.query_starts != nullptr && batch.seq_lens != nullptr && batch.block_tables != nullptr);
  BM_CHECK(reinterpret_cast<uintptr_t>(cache.k) % 16 == 0 && reinterpret_cast<uintptr_t>(cache.v) % 16 == 0);
  if (dims.num_tokens == 0) return;
  const SplitPlan plan = plan_splits(dims, batch.max_seq_len, num_sms);
  BM_CHECK(int64_t{dims.num_kv_heads} * plan.subgroups <= 65535 && plan.max_splits <= 65535);
  DecodeParams p{};
  p.q = q;
  p.k_cache = cache.k;
  p.v_cache = cache.v;
  p.row_size = cache.row_size;
  p.query_starts = batch.query_starts;
  p.seq_lens = batch.seq_lens;
  p.block_tables = batch.block_tables;
  p.max_blocks_per_seq = batch.max_blocks_per_seq;
  p.num_seqs = batch.num_seqs;
  p.num_heads = dims.num_heads;
  p.head_dim = dims.head_dim;
  p.group = dims.num_heads / dims.num_kv_heads;
  p.heads_per_block = plan.heads_per_block;
  p.subgroups = plan.subgroups;
  p.max_splits = plan.max_splits;
  p.lanes_per_row = plan.lanes_per_row;
  p.scale_log2 = dims.scale * kLog2e;
  p.only_short_queries = only_short_queries;
  p.out = out;
  if (plan.max_splits > 1) {
    const int64_t partials = int64_t{dims.num_tokens} * dims.num_heads * plan.max_splits;
    BM_CHECK(workspace.data != nullptr && workspace.num_floats >= partials * (dims.head_dim + 2));
    p.partial_out = workspace.data;
    p.partial_ml = workspace.data + partials * dims.head_dim;
  }
  const dim3 grid(static_cast<unsigned>(dims.num_tokens), static_cast<unsigned>(dims.num_kv_heads * plan.subgroups),
                  static_cast<unsigned>(plan.max_splits));
  const DecodeKernel kernel = kDecodeKernels[cache.bf16 ? 1 : 0][heads_bound_index(plan.heads_per_block)];
  kernel<<<grid, kThreads, 0, stream>>>(p);
  BM_CUDA_CHECK_LAUNCH();
  if (plan.max_splits > 1) {
    const dim3 combine_grid(static_cast<unsigned>(dims.num_tokens), static_cast<unsigned>(dims.num_heads));
    combine_kernel<<<combine_grid, kThreads, 0, stream>>>(p);
    BM_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace bm::engine::cuda
