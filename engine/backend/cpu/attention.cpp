// Paged causal attention, blocked: work items are tiles of query tokens × the heads of one KV head, walking the
// sequence's KV blocks through its block table with an online softmax (attend_tile). Prefill chunks (many query
// rows) and decode (one) take the same path. Scores are F32 dot products of the F32 query with K rows widened
// from the cache (BF16 by default) in registers; accumulation is F32; the block's probabilities come from exp8,
// eight lanes at a time.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "common/check.h"
#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/simd.h"

namespace bm::engine::cpu {
namespace {

constexpr int64_t kBlockSize = 16;
// Query tokens per work item. Times the GQA group (7 on Qwen2.5-0.5B) that is 28 rows reusing each K/V block,
// and their queries and running outputs (2 × 28 × 64 floats = 14 KiB) stay in L1 with the block; at 16 tokens
// they spill to L2. Measured on the busy 2-vCPU VM the two were alike (bm_backend_ops_bench, within its noise).
constexpr int64_t kQueryTile = 4;

__attribute__((always_inline)) inline float dot(const float* q, const float* k, int64_t d) {
  const int64_t d8 = d - d % kLanes;
  F32x8 acc = {};
  for (int64_t c = 0; c < d8; c += kLanes) acc += load8(q + c) * load8(k + c);
  float sum = reduce_add(acc);
  for (int64_t c = d8; c < d; ++c) sum += q[c] * load1(k + c);
  return sum;
}

// [a0+a1, a2+a3, b0+b1, b2+b3, a4+a5, a6+a7, b4+b5, b6+b7]: one level of the transpose tree below.
__attribute__((always_inline)) inline F32x8 pair_sums(F32x8 a, F32x8 b) {
  return __builtin_shufflevector(a, b, 0, 2, 8, 10, 4, 6, 12, 14) +
         __builtin_shufflevector(a, b, 1, 3, 9, 11, 5, 7, 13, 15);
}

// The dot products of q with eight K rows (row j at k + rows[j] * stride), d a multiple of 8: eight vector
// accumulators reduced together by a transpose tree (7 shuffle pairs for 8 sums instead of a horizontal reduction
// per sum). Lane j's sum depends on row j alone, in a fixed order, whichever rows fill the other lanes.
__attribute__((always_inline)) inline F32x8 dot8(const float* q, const float* k, const int64_t* rows, int64_t stride,
                                                 int64_t d) {
  F32x8 acc[kLanes] = {};
  for (int64_t c = 0; c < d; c += kLanes) {
    const F32x8 qc = load8(q + c);
    for (int j = 0; j < kLanes; ++j) acc[j] += qc * load8(k + rows[j] * stride + c);
  }
  const F32x8 x = pair_sums(pair_sums(acc[0], acc[1]), pair_sums(acc[2], acc[3]));
  const F32x8 y = pair_sums(pair_sums(acc[4], acc[5]), pair_sums(acc[6], acc[7]));
  return __builtin_shufflevector(x, y, 0, 1, 2, 3, 8, 9, 10, 11) +
         __builtin_shufflevector(x, y, 4, 5, 6, 7, 12, 13, 14, 15);
}

// One work item: up to kQueryTile consecutive query tokens of one sequence and the query heads that share one KV
// head (grouped-query attention), i.e. tokens × group rows that all read the same K/V rows.
struct Tile {
  const float* q;          // the tile's first token, head 0
  const int32_t* blocks;   // this sequence's block table
  int64_t first_position;  // position of the tile's first token
  int64_t num_tokens;
  int64_t first_head;  // kv head * group
  int64_t group;
  int64_t q_row;      // floats between query tokens (num_heads * head_dim)
  int64_t kv_offset;  // kv head * head_dim within a cache row
  int64_t row_size;
  int64_t head_dim;
  float scale;
};

// Flash-style: the tile walks the KV blocks once, each block's 16 K and V rows are read from memory once and
// reused from L1 by every row of the tile, with a running (online) softmax per row: the running maximum m, the
// running sum l and the unnormalised output acc are rescaled by exp(m_old - m_new) when a block raises the
// maximum. Each row's arithmetic is the same sequence of operations whatever the tile holds (the blocks are
// fixed by absolute position), so a token gives the same bits in a prefill as in a decode.
template <typename T>
__attribute__((always_inline)) inline void attend_tile(const Tile& tile, const T* k_cache, const T* v_cache,
                                                       float* state, float* out) {
  const int64_t d = tile.head_dim;
  const int64_t rows = tile.num_tokens * tile.group;
  float* m = state;
  float* l = m + rows;
  float* acc = l + rows;
  // A BF16 block's K and V rows widened once for every row of the tile (28 on Qwen2.5-0.5B's 4 tokens × 7 heads)
  // instead of once per row; widening is exact, so the sums are the same bits either way.
  float* k_wide = acc + rows * d;
  float* v_wide = k_wide + kBlockSize * d;
  std::fill(m, m + rows, -INFINITY);
  std::fill(l, l + rows, 0.0f);
  std::fill(acc, acc + rows * d, 0.0f);
  const int64_t last_position = tile.first_position + tile.num_tokens - 1;
  for (int64_t b = 0; b <= last_position / kBlockSize; ++b) {
    const int64_t slot0 = static_cast<int64_t>(tile.blocks[b]) * kBlockSize;
    const T* k_block = k_cache + slot0 * tile.row_size + tile.kv_offset;
    const T* v_block = v_cache + slot0 * tile.row_size + tile.kv_offset;
    const float* k_rows;
    const float* v_rows;
    int64_t stride;
    if constexpr (std::is_same_v<T, float>) {
      k_rows = k_block, v_rows = v_block, stride = tile.row_size;
    } else {
      const int64_t block_rows = std::min<int64_t>(kBlockSize, last_position - b * kBlockSize + 1);
      const int64_t d8 = d - d % kLanes;
      for (int64_t j = 0; j < block_rows; ++j) {
        for (int64_t c = 0; c < d8; c += kLanes) {
          store8(k_wide + j * d + c, load8(k_block + j * tile.row_size + c));
          store8(v_wide + j * d + c, load8(v_block + j * tile.row_size + c));
        }
        for (int64_t c = d8; c < d; ++c) {
          k_wide[j * d + c] = load1(k_block + j * tile.row_size + c);
          v_wide[j * d + c] = load1(v_block + j * tile.row_size + c);
        }
      }
      k_rows = k_wide, v_rows = v_wide, stride = d;
    }
    for (int64_t i = 0; i < tile.num_tokens; ++i) {
      const int64_t position = tile.first_position + i;
      if (b * kBlockSize > position) continue;  // the block lies wholly after this token
      const int64_t visible = std::min<int64_t>(kBlockSize, position - b * kBlockSize + 1);
      for (int64_t hh = 0; hh < tile.group; ++hh) {
        const int64_t r = i * tile.group + hh;
        const float* q = tile.q + i * tile.q_row + (tile.first_head + hh) * d;
        float scores[kBlockSize];
        std::fill(scores, scores + kBlockSize, -INFINITY);  // the lanes past `visible` (exp8 reads all 16)
        float block_max = -INFINITY;
        if (d % kLanes == 0) {
          for (int64_t j0 = 0; j0 < visible; j0 += kLanes) {
            int64_t rows_of[kLanes];  // past `visible`, the last visible row again (its lane is overwritten below)
            for (int j = 0; j < kLanes; ++j) rows_of[j] = std::min<int64_t>(j0 + j, visible - 1);
            store8(scores + j0, dot8(q, k_rows, rows_of, stride, d) * tile.scale);
          }
          std::fill(scores + visible, scores + kBlockSize, -INFINITY);
        } else {
          for (int64_t j = 0; j < visible; ++j) scores[j] = dot(q, k_rows + j * stride, d) * tile.scale;
        }
        for (int64_t j = 0; j < visible; ++j) block_max = std::max(block_max, scores[j]);
        const float new_max = std::max(m[r], block_max);
        const float correction = std::exp(m[r] - new_max);  // exp(-inf) = 0 on the first block
        // The block's probabilities, eight lanes at a time (exp8); lanes past `visible` are never read.
        float p[kBlockSize];
        for (int64_t j = 0; j < kBlockSize; j += kLanes) {
          const F32x8 shifted = load8(scores + j) - new_max;
          store8(p + j, exp8(shifted));
        }
        float sum = l[r] * correction;
        for (int64_t j = 0; j < visible; ++j) sum += p[j];
        // acc = acc · correction + Σ_j p_j · v_j, eight output lanes at a time held in a register across the
        // block's rows (each lane's operations in the same order whatever the tile).
        float* a = acc + r * d;
        const int64_t d8 = d - d % kLanes;
        for (int64_t c = 0; c < d8; c += kLanes) {
          F32x8 lanes = load8(a + c) * correction;
          for (int64_t j = 0; j < visible; ++j) lanes = lanes + p[j] * load8(v_rows + j * stride + c);
          store8(a + c, lanes);
        }
        for (int64_t c = d8; c < d; ++c) {
          float lane = a[c] * correction;
          for (int64_t j = 0; j < visible; ++j) lane += p[j] * v_rows[j * stride + c];
          a[c] = lane;
        }
        l[r] = sum;
        m[r] = new_max;
      }
    }
  }
  for (int64_t i = 0; i < tile.num_tokens; ++i) {
    for (int64_t hh = 0; hh < tile.group; ++hh) {
      const int64_t r = i * tile.group + hh;
      float* o = out + i * tile.q_row + (tile.first_head + hh) * d;
      const float inverse = 1.0f / l[r];
      for (int64_t c = 0; c < d; ++c) o[c] = acc[r * d + c] * inverse;
    }
  }
}

BM_CPU_KERNEL void attend_tile_f32(const Tile& tile, const float* k, const float* v, float* state, float* out) {
  attend_tile(tile, k, v, state, out);
}

BM_CPU_KERNEL void attend_tile_bf16(const Tile& tile, const uint16_t* k, const uint16_t* v, float* state, float* out) {
  attend_tile(tile, k, v, state, out);
}

}  // namespace

void store_cache_row(const KvCacheView& cache, void* half, int64_t slot, const float* row) {
  BM_CHECK(slot >= 0 && slot < cache.num_slots);
  if (cache.dtype == DType::kBF16) {
    uint16_t* dst = static_cast<uint16_t*>(half) + slot * cache.row_size;
    for (int64_t c = 0; c < cache.row_size; ++c) dst[c] = f32_to_bf16(row[c]);
  } else {
    std::copy(row, row + cache.row_size, static_cast<float*>(half) + slot * cache.row_size);
  }
}

void store_kv(ThreadPool& pool, const float* k, const float* v, int64_t n, const int32_t* slot_mapping,
              const KvCacheView& cache) {
  pool.parallel_for(n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t slot = slot_mapping[t];
      if (slot < 0) continue;  // a padding row of a recorded step
      store_cache_row(cache, cache.k, slot, k + t * cache.row_size);
      store_cache_row(cache, cache.v, slot, v + t * cache.row_size);
    }
  });
}

void paged_attention(ThreadPool& pool, const float* q, int64_t num_tokens, const KvCacheView& cache,
                     const AttentionBatchView& batch, int32_t num_heads, int32_t num_kv_heads, int32_t head_dim,
                     float scale, float* out) {
  BM_CHECK(num_kv_heads > 0 && num_heads % num_kv_heads == 0);
  BM_CHECK(batch.query_starts[batch.num_seqs] == num_tokens);
  const int64_t group = num_heads / num_kv_heads;
  const int64_t q_row = int64_t{num_heads} * head_dim;
  struct Item {
    int32_t seq;
    int32_t kv_head;
    int64_t first_token;
    int64_t num_tokens;
  };
  std::vector<Item> items;
  for (int32_t s = 0; s < batch.num_seqs; ++s) {
    const int64_t begin = batch.query_starts[s], end = batch.query_starts[s + 1];
    BM_CHECK(begin <= end);
    const int64_t last_position = batch.seq_lens[s] - 1;
    BM_CHECK(end == begin ||
             (batch.seq_lens[s] >= end - begin && last_position / kBlockSize < batch.max_blocks_per_seq));
    const int32_t* blocks = batch.block_tables + int64_t{s} * batch.max_blocks_per_seq;
    for (int64_t b = 0; end > begin && b <= last_position / kBlockSize; ++b) {
      BM_CHECK(blocks[b] >= 0 && (static_cast<int64_t>(blocks[b]) + 1) * kBlockSize <= cache.num_slots);
    }
    for (int64_t t = begin; t < end; t += kQueryTile) {
      for (int32_t g = 0; g < num_kv_heads; ++g) items.push_back({s, g, t, std::min(kQueryTile, end - t)});
    }
  }
  pool.parallel_for(static_cast<int64_t>(items.size()), 1, [&](int64_t first, int64_t last) {
    thread_local std::vector<float> state;
    for (int64_t index = first; index < last; ++index) {
      const Item& item = items[static_cast<size_t>(index)];
      const int64_t s = item.seq;
      const int64_t num_new = batch.query_starts[s + 1] - batch.query_starts[s];
      const Tile tile{q + item.first_token * q_row,
                      batch.block_tables + s * batch.max_blocks_per_seq,
                      batch.seq_lens[s] - num_new + (item.first_token - batch.query_starts[s]),
                      item.num_tokens,
                      int64_t{item.kv_head} * group,
                      group,
                      q_row,
                      int64_t{item.kv_head} * head_dim,
                      cache.row_size,
                      head_dim,
                      scale};
      state.resize(static_cast<size_t>(item.num_tokens * group * (head_dim + 2) + 2 * kBlockSize * head_dim));
      float* tile_out = out + item.first_token * q_row;
      if (cache.dtype == DType::kBF16) {
        attend_tile_bf16(tile, static_cast<const uint16_t*>(cache.k), static_cast<const uint16_t*>(cache.v),
                         state.data(), tile_out);
      } else {
        attend_tile_f32(tile, static_cast<const float*>(cache.k), static_cast<const float*>(cache.v), state.data(),
                        tile_out);
      }
    }
  });
}

}  // namespace bm::engine::cpu
