// Split-sequence paged attention ("flash decoding"), for decode steps, short query tails, and every row where
// the tensor-core prefill kernel does not apply (F32 cache, other head sizes).
//
// Grid: x = query row, y = (KV head, slice of its query heads), z = split of the visible positions.
// A block owns up to kMaxGroup query heads that share one KV head (grouped-query attention), so each K and V
// row is read once for all of them. It walks its split in chunks of kChunk positions:
//   1. scores: one thread per position reads the K row (16-byte loads) and dots it with every head's query
//      (held in shared memory), F32;
//   2. online softmax: one warp per head takes the chunk's max, turns scores into exp(s - m), rescales the
//      running sum;
//   3. values: thread (part, d) accumulates sum_p prob[h][p] * V[p][d] for every head over the chunk positions
//      p ≡ part (mod parts), rescaling its accumulators by the softmax correction first.
// With one split the block writes the normalised output; with several it writes (unnormalised output, max,
// sum) per split and a combine kernel merges them. The number of splits is chosen so that a small batch
// still fills the GPU; a large batch gets one split and needs no workspace.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_util.cuh"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kChunk = kThreads;          // positions per chunk: one per thread in the score phase
constexpr int kMaxGroup = kThreads / 32;  // query heads per block: one warp per head in the softmax phase
constexpr int kMaxHeadDim = 256;
constexpr int kBlockTokens = 16;  // kKvBlockSize (backend.h)

struct SplitPlan {
  int32_t heads_per_block = 1;
  int32_t subgroups = 1;
  int32_t num_splits = 1;
  int32_t split_len = kChunk;
};

SplitPlan plan_splits(const AttentionDims& dims, int32_t max_seq_len, int32_t num_sms) {
  SplitPlan plan;
  const int32_t group = dims.num_heads / dims.num_kv_heads;
  plan.heads_per_block = std::min(group, kMaxGroup);
  plan.subgroups = static_cast<int32_t>(ceil_div(group, plan.heads_per_block));
  const int64_t blocks = int64_t{dims.num_tokens} * dims.num_kv_heads * plan.subgroups;
  const int64_t max_chunks = std::max<int64_t>(1, ceil_div(std::max(max_seq_len, 1), kChunk));
  // Aim for about four blocks per SM; never split below one chunk per split.
  const int64_t target = int64_t{4} * std::max(num_sms, 1);
  int64_t splits = blocks >= target ? 1 : ceil_div(target, std::max<int64_t>(blocks, 1));
  splits = std::clamp<int64_t>(splits, 1, max_chunks);
  const int64_t chunks_per_split = ceil_div(max_chunks, splits);
  plan.split_len = static_cast<int32_t>(chunks_per_split * kChunk);
  plan.num_splits = static_cast<int32_t>(ceil_div(max_chunks, chunks_per_split));
  return plan;
}

struct DecodeParams {
  const float* q;
  const void* k_cache;
  const void* v_cache;
  bool bf16;
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
  int32_t num_splits;
  int32_t split_len;
  float scale;
  bool only_short_queries;
  float* out;
  float* partial_out;  // [rows, heads, splits, head_dim] when num_splits > 1
  float* partial_ml;   // [rows, heads, splits, 2]
};

// Which sequence row t belongs to and the position it sits at; false when the row is not this kernel's.
__device__ __forceinline__ bool locate_row(const DecodeParams& p, int32_t t, int32_t& s, int32_t& position) {
  s = sequence_of_row(p.query_starts, p.num_seqs, t);
  const int32_t q_start = p.query_starts[s];
  const int32_t q_len = p.query_starts[s + 1] - q_start;
  if (p.only_short_queries && q_len >= kPrefillMinQueryLen) return false;
  position = p.seq_lens[s] - q_len + (t - q_start);
  return position >= 0;
}

// dots[h] += q[h] · row over head_dim, row = 8 bf16 (or 4 f32) per 16-byte load.
__device__ __forceinline__ void dot_k_row(const DecodeParams& p, const void* k_row, const float (*q_s)[kMaxHeadDim],
                                          int32_t nh, float* dots) {
  if (p.bf16) {
    const uint4* src = static_cast<const uint4*>(k_row);
    for (int32_t c = 0; c < p.head_dim / 8; ++c) {
      const uint4 raw = src[c];
      const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
      float k[8];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        k[2 * j] = __uint_as_float(words[j] << 16);
        k[2 * j + 1] = __uint_as_float(words[j] & 0xffff0000u);
      }
#pragma unroll
      for (int h = 0; h < kMaxGroup; ++h) {
        if (h < nh) {
#pragma unroll
          for (int j = 0; j < 8; ++j) dots[h] += q_s[h][c * 8 + j] * k[j];
        }
      }
    }
  } else {
    const float4* src = static_cast<const float4*>(k_row);
    for (int32_t c = 0; c < p.head_dim / 4; ++c) {
      const float4 raw = src[c];
      const float k[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
      for (int h = 0; h < kMaxGroup; ++h) {
        if (h < nh) {
#pragma unroll
          for (int j = 0; j < 4; ++j) dots[h] += q_s[h][c * 4 + j] * k[j];
        }
      }
    }
  }
}

__global__ void __launch_bounds__(kThreads) decode_kernel(DecodeParams p) {
  __shared__ float q_s[kMaxGroup][kMaxHeadDim];
  __shared__ float scores[kMaxGroup][kChunk];  // scores, then probabilities; at the end the part reduction
  __shared__ int64_t slots[kChunk];
  __shared__ float m_s[kMaxGroup], l_s[kMaxGroup], alpha_s[kMaxGroup];

  const int32_t t = blockIdx.x;
  const int32_t kv_head = blockIdx.y / p.subgroups;
  const int32_t head0 = kv_head * p.group + (blockIdx.y % p.subgroups) * p.heads_per_block;
  const int32_t nh = min(p.heads_per_block, kv_head * p.group + p.group - head0);
  const int32_t split = blockIdx.z;
  const int32_t D = p.head_dim;
  const int tid = threadIdx.x;

  int32_t s = 0, position = 0;
  if (!locate_row(p, t, s, position)) return;
  const int32_t begin = split * p.split_len;
  const int32_t end = min(position + 1, begin + p.split_len);
  if (begin >= end) {  // nothing visible in this split (only possible with several splits)
    if (tid < nh) {
      const int64_t base = (int64_t{t} * p.num_heads + head0 + tid) * p.num_splits + split;
      p.partial_ml[2 * base] = -INFINITY;
      p.partial_ml[2 * base + 1] = 0.0f;
    }
    return;
  }

  for (int32_t i = tid; i < nh * D; i += kThreads) {
    q_s[i / D][i % D] = p.q[(int64_t{t} * p.num_heads + head0 + i / D) * D + i % D];
  }
  if (tid < kMaxGroup) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.0f;
  }
  __syncthreads();

  const int32_t* table = p.block_tables + int64_t{s} * p.max_blocks_per_seq;
  const int64_t kv_offset = int64_t{kv_head} * D;
  const int64_t elem = p.bf16 ? 2 : 4;
  const char* k_base = static_cast<const char*>(p.k_cache);
  const int32_t parts = max(1, kThreads / D);
  const int32_t part = tid / D;
  const int32_t d = tid % D;
  const bool v_active = part < parts;
  float acc[kMaxGroup];
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) acc[h] = 0.0f;

  for (int32_t c0 = begin; c0 < end; c0 += kChunk) {
    const int32_t count = min(kChunk, end - c0);
    if (tid < count) {
      const int32_t pos = c0 + tid;
      const int64_t slot = int64_t{table[pos / kBlockTokens]} * kBlockTokens + pos % kBlockTokens;
      slots[tid] = slot;
      float dots[kMaxGroup];
#pragma unroll
      for (int h = 0; h < kMaxGroup; ++h) dots[h] = 0.0f;
      dot_k_row(p, k_base + (slot * p.row_size + kv_offset) * elem, q_s, nh, dots);
#pragma unroll
      for (int h = 0; h < kMaxGroup; ++h) {
        if (h < nh) scores[h][tid] = dots[h] * p.scale;
      }
    }
    __syncthreads();
    const int warp = tid / 32;
    const int lane = tid % 32;
    if (warp < nh) {
      float chunk_max = -INFINITY;
      for (int32_t i = lane; i < count; i += 32) chunk_max = fmaxf(chunk_max, scores[warp][i]);
      chunk_max = warp_max(chunk_max);
      const float m_old = m_s[warp];
      const float m_new = fmaxf(m_old, chunk_max);
      float sum = 0.0f;
      for (int32_t i = lane; i < count; i += 32) {
        const float e = expf(scores[warp][i] - m_new);
        scores[warp][i] = e;
        sum += e;
      }
      sum = warp_sum(sum);
      __syncwarp();
      if (lane == 0) {
        const float alpha = expf(m_old - m_new);  // 0 on the first chunk (m_old = -inf)
        alpha_s[warp] = alpha;
        l_s[warp] = l_s[warp] * alpha + sum;
        m_s[warp] = m_new;
      }
    }
    __syncthreads();
    if (v_active) {
#pragma unroll
      for (int h = 0; h < kMaxGroup; ++h) acc[h] *= (h < nh ? alpha_s[h] : 0.0f);
      for (int32_t i = part; i < count; i += parts) {
        const int64_t index = slots[i] * p.row_size + kv_offset + d;
        const float v = p.bf16 ? bf16_bits_to_f32(static_cast<const uint16_t*>(p.v_cache)[index])
                               : static_cast<const float*>(p.v_cache)[index];
#pragma unroll
        for (int h = 0; h < kMaxGroup; ++h) {
          if (h < nh) acc[h] += scores[h][i] * v;
        }
      }
    }
    __syncthreads();  // the next chunk overwrites scores and slots
  }

  // Sum the parts' accumulators (scores[h] is free now and has room for parts * D <= kThreads values).
  if (v_active) {
#pragma unroll
    for (int h = 0; h < kMaxGroup; ++h) {
      if (h < nh) scores[h][part * D + d] = acc[h];
    }
  }
  __syncthreads();
  for (int32_t i = tid; i < nh * D; i += kThreads) {
    const int32_t h = i / D;
    const int32_t dd = i % D;
    float o = 0.0f;
    for (int32_t q = 0; q < parts; ++q) o += scores[h][q * D + dd];
    const int64_t head_row = int64_t{t} * p.num_heads + head0 + h;
    if (p.num_splits == 1) {
      p.out[head_row * D + dd] = o / l_s[h];
    } else {
      const int64_t base = head_row * p.num_splits + split;
      p.partial_out[base * D + dd] = o;
      if (dd == 0) {
        p.partial_ml[2 * base] = m_s[h];
        p.partial_ml[2 * base + 1] = l_s[h];
      }
    }
  }
}

// Merges the splits of one (row, head): out = sum_s o_s e^(m_s - M) / sum_s l_s e^(m_s - M).
__global__ void combine_kernel(DecodeParams p) {
  const int32_t t = blockIdx.x;
  const int32_t h = blockIdx.y;
  int32_t s = 0, position = 0;
  if (!locate_row(p, t, s, position)) return;
  const int32_t used = min(p.num_splits, (position + p.split_len) / p.split_len);
  const int64_t head_row = int64_t{t} * p.num_heads + h;
  const float* ml = p.partial_ml + head_row * p.num_splits * 2;
  float m = -INFINITY;
  for (int32_t i = 0; i < used; ++i) m = fmaxf(m, ml[2 * i]);
  float l = 0.0f;
  for (int32_t i = 0; i < used; ++i) l += ml[2 * i + 1] * expf(ml[2 * i] - m);
  for (int32_t dd = threadIdx.x; dd < p.head_dim; dd += blockDim.x) {
    float o = 0.0f;
    for (int32_t i = 0; i < used; ++i) {
      o += p.partial_out[(head_row * p.num_splits + i) * p.head_dim + dd] * expf(ml[2 * i] - m);
    }
    p.out[head_row * p.head_dim + dd] = o / l;
  }
}

}  // namespace

int64_t attention_decode_workspace_floats(const AttentionDims& dims, int32_t max_seq_len, int32_t num_sms) {
  BM_CHECK(dims.num_kv_heads > 0 && dims.num_heads % dims.num_kv_heads == 0);
  const SplitPlan plan = plan_splits(dims, max_seq_len, num_sms);
  if (plan.num_splits == 1) return 0;
  return int64_t{dims.num_tokens} * dims.num_heads * plan.num_splits * (dims.head_dim + 2);
}

void launch_attention_decode(const float* q, const KvCachePtr& cache, const AttentionBatchPtr& batch,
                             const AttentionDims& dims, bool only_short_queries, int32_t num_sms,
                             const AttentionWorkspace& workspace, float* out, cudaStream_t stream) {
  BM_CHECK(dims.num_tokens >= 0 && dims.num_heads > 0 && dims.num_kv_heads > 0);
  BM_CHECK(dims.num_heads % dims.num_kv_heads == 0);
  BM_CHECK(dims.head_dim > 0 && dims.head_dim <= kMaxHeadDim && dims.head_dim % 8 == 0);
  BM_CHECK(cache.row_size == int64_t{dims.num_kv_heads} * dims.head_dim);
  BM_CHECK(batch.num_seqs > 0 && batch.max_blocks_per_seq > 0);
  BM_CHECK(batch.max_seq_len > 0 && batch.max_seq_len <= batch.max_blocks_per_seq * kBlockTokens);
  BM_CHECK(q != nullptr && out != nullptr && cache.k != nullptr && cache.v != nullptr);
  BM_CHECK(batch.query_starts != nullptr && batch.seq_lens != nullptr && batch.block_tables != nullptr);
  BM_CHECK(reinterpret_cast<uintptr_t>(cache.k) % 16 == 0 && reinterpret_cast<uintptr_t>(cache.v) % 16 == 0);
  if (dims.num_tokens == 0) return;
  const SplitPlan plan = plan_splits(dims, batch.max_seq_len, num_sms);
  BM_CHECK(int64_t{dims.num_kv_heads} * plan.subgroups <= 65535 && plan.num_splits <= 65535);
  DecodeParams p{};
  p.q = q;
  p.k_cache = cache.k;
  p.v_cache = cache.v;
  p.bf16 = cache.bf16;
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
  p.num_splits = plan.num_splits;
  p.split_len = plan.split_len;
  p.scale = dims.scale;
  p.only_short_queries = only_short_queries;
  p.out = out;
  if (plan.num_splits > 1) {
    const int64_t needed = int64_t{dims.num_tokens} * dims.num_heads * plan.num_splits * (dims.head_dim + 2);
    BM_CHECK(workspace.data != nullptr && workspace.num_floats >= needed);
    p.partial_out = workspace.data;
    p.partial_ml = workspace.data + int64_t{dims.num_tokens} * dims.num_heads * plan.num_splits * dims.head_dim;
  }
  const dim3 grid(static_cast<unsigned>(dims.num_tokens), static_cast<unsigned>(dims.num_kv_heads * plan.subgroups),
                  static_cast<unsigned>(plan.num_splits));
  decode_kernel<<<grid, kThreads, 0, stream>>>(p);
  BM_CUDA_CHECK_LAUNCH();
  if (plan.num_splits > 1) {
    const dim3 combine_grid(static_cast<unsigned>(dims.num_tokens), static_cast<unsigned>(dims.num_heads));
    combine_kernel<<<combine_grid, std::min(dims.head_dim, 256), 0, stream>>>(p);
    BM_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace bm::engine::cuda
