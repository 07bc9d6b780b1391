// Paged causal attention, one (query token, head) pair per task: scores over the cache positions the token
// may see, a float32 softmax, then the probability-weighted sum of V rows. K/V rows are found through the
// sequence's block table, so prefill chunks (many query rows) and decode (one) take the same path.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common/check.h"
#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/simd.h"

namespace bm::engine::cpu {
namespace {

constexpr int64_t kBlockSize = 16;

template <typename T>
__attribute__((always_inline)) inline float dot(const float* q, const T* k, int64_t d) {
  const int64_t d8 = d - d % kLanes;
  F32x8 acc = {};
  for (int64_t c = 0; c < d8; c += kLanes) acc += load8(q + c) * load8(k + c);
  float sum = reduce_add(acc);
  for (int64_t c = d8; c < d; ++c) sum += q[c] * load1(k + c);
  return sum;
}

// acc += weight * v
template <typename T>
__attribute__((always_inline)) inline void axpy(float weight, const T* v, int64_t d, float* acc) {
  const int64_t d8 = d - d % kLanes;
  const F32x8 w = {weight, weight, weight, weight, weight, weight, weight, weight};
  for (int64_t c = 0; c < d8; c += kLanes) store8(acc + c, load8(acc + c) + w * load8(v + c));
  for (int64_t c = d8; c < d; ++c) acc[c] += weight * load1(v + c);
}

struct HeadTask {
  const float* q;         // head_dim
  const int32_t* blocks;  // this sequence's block table
  int64_t num_positions;  // cache positions [0, num_positions) are visible
  int64_t kv_offset;      // kv head * head_dim within a cache row
  int64_t row_size;
  int64_t head_dim;
  float scale;
};

template <typename T>
__attribute__((always_inline)) inline void attend_one(const HeadTask& task, const T* k_cache, const T* v_cache,
                                                      float* scores, float* out) {
  float max_score = -INFINITY;
  for (int64_t p = 0; p < task.num_positions; ++p) {
    const int64_t slot = static_cast<int64_t>(task.blocks[p / kBlockSize]) * kBlockSize + p % kBlockSize;
    scores[p] = dot(task.q, k_cache + slot * task.row_size + task.kv_offset, task.head_dim) * task.scale;
    max_score = std::max(max_score, scores[p]);
  }
  float total = 0.0f;
  for (int64_t p = 0; p < task.num_positions; ++p) {
    scores[p] = std::exp(scores[p] - max_score);
    total += scores[p];
  }
  std::fill(out, out + task.head_dim, 0.0f);
  for (int64_t p = 0; p < task.num_positions; ++p) {
    const int64_t slot = static_cast<int64_t>(task.blocks[p / kBlockSize]) * kBlockSize + p % kBlockSize;
    axpy(scores[p] / total, v_cache + slot * task.row_size + task.kv_offset, task.head_dim, out);
  }
}

BM_CPU_KERNEL void attend_f32(const HeadTask& task, const float* k, const float* v, float* scores, float* out) {
  attend_one(task, k, v, scores, out);
}

BM_CPU_KERNEL void attend_bf16(const HeadTask& task, const uint16_t* k, const uint16_t* v, float* scores, float* out) {
  attend_one(task, k, v, scores, out);
}

}  // namespace

void store_kv(ThreadPool& pool, const float* k, const float* v, int64_t n, const int32_t* slot_mapping,
              const KvCacheView& cache) {
  pool.parallel_for(n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t slot = slot_mapping[t];
      if (slot < 0) continue;  // a padding row of a recorded step
      BM_CHECK(slot < cache.num_slots);
      const float* k_row = k + t * cache.row_size;
      const float* v_row = v + t * cache.row_size;
      if (cache.dtype == DType::kBF16) {
        uint16_t* k_dst = static_cast<uint16_t*>(cache.k) + slot * cache.row_size;
        uint16_t* v_dst = static_cast<uint16_t*>(cache.v) + slot * cache.row_size;
        for (int64_t c = 0; c < cache.row_size; ++c) {
          k_dst[c] = f32_to_bf16(k_row[c]);
          v_dst[c] = f32_to_bf16(v_row[c]);
        }
      } else {
        std::copy(k_row, k_row + cache.row_size, static_cast<float*>(cache.k) + slot * cache.row_size);
        std::copy(v_row, v_row + cache.row_size, static_cast<float*>(cache.v) + slot * cache.row_size);
      }
    }
  });
}

void paged_attention(ThreadPool& pool, const float* q, int64_t num_tokens, const KvCacheView& cache,
                     const AttentionBatchView& batch, int32_t num_heads, int32_t num_kv_heads, int32_t head_dim,
                     float scale, float* out) {
  BM_CHECK(num_kv_heads > 0 && num_heads % num_kv_heads == 0);
  BM_CHECK(batch.query_starts[batch.num_seqs] == num_tokens);
  const int32_t group = num_heads / num_kv_heads;
  pool.parallel_for(num_tokens * num_heads, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    for (int64_t index = begin; index < end; ++index) {
      const int64_t t = index / num_heads;
      const int32_t h = static_cast<int32_t>(index % num_heads);
      // The sequence owning query row t: the last s with query_starts[s] <= t.
      const int32_t* start =
          std::upper_bound(batch.query_starts, batch.query_starts + batch.num_seqs + 1, static_cast<int32_t>(t));
      const int64_t s = (start - batch.query_starts) - 1;
      const int64_t num_new = batch.query_starts[s + 1] - batch.query_starts[s];
      const int64_t position = batch.seq_lens[s] - num_new + (t - batch.query_starts[s]);
      BM_CHECK(position >= 0 && (position / kBlockSize) < batch.max_blocks_per_seq);
      const int32_t* blocks = batch.block_tables + s * batch.max_blocks_per_seq;
      for (int64_t b = 0; b <= position / kBlockSize; ++b) {
        BM_CHECK(blocks[b] >= 0 && (static_cast<int64_t>(blocks[b]) + 1) * kBlockSize <= cache.num_slots);
      }
      HeadTask task{q + (t * num_heads + h) * head_dim,
                    blocks,
                    position + 1,
                    static_cast<int64_t>(h / group) * head_dim,
                    cache.row_size,
                    head_dim,
                    scale};
      scores.resize(static_cast<size_t>(task.num_positions));
      float* head_out = out + (t * num_heads + h) * head_dim;
      if (cache.dtype == DType::kBF16) {
        attend_bf16(task, static_cast<const uint16_t*>(cache.k), static_cast<const uint16_t*>(cache.v), scores.data(),
                    head_out);
      } else {
        attend_f32(task, static_cast<const float*>(cache.k), static_cast<const float*>(cache.v), scores.data(),
                   head_out);
      }
    }
  });
}

}  // namespace bm::engine::cpu
