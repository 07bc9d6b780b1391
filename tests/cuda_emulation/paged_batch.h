#pragma once
// One random attention batch over a paged KV cache for the emulated attention tests: sequences with the given
// cache and query lengths, physical blocks shuffled, K/V in F32 and their BF16 rounding, queries, and the CPU
// backend's result (cpu::paged_attention), plus the launch descriptors the CUDA kernels take.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "engine/backend/cpu/bf16.h"
#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::emu {

struct Case {
  int heads, kv_heads, dim;
  bool bf16;
  std::vector<int> seq_lens, q_lens;
  int num_sms;
  bool only_short;
  // A launch bound above the longest sequence, as a recorded decode graph passes (0: the longest sequence); the
  // block tables are then that wide, unused entries holding an invalid block id.
  int seq_bound = 0;
  // Rows appended after the sequences above, each a sequence of one query row that sees no position (length 0):
  // the CPU backend rejects such a batch, so make_paged_batch leaves them out and a test adds them itself.
  int empty_rows = 0;
};

struct PagedBatch {
  int num_seqs = 0, num_tokens = 0, max_blocks = 0, max_seq = 0, max_q = 0;
  int64_t row = 0, slots = 0;
  float scale = 1;
  std::vector<int32_t> table, query_starts;
  std::vector<float> k_f32, v_f32, q, reference;
  std::vector<uint16_t> k_bf16, v_bf16;
  void* k = nullptr;
  void* v = nullptr;

  cuda::KvCachePtr cache(const Case& c) const { return {k, v, c.bf16, slots, row}; }
  cuda::AttentionBatchPtr batch(const Case& c) const {
    return {num_seqs, query_starts.data(), c.seq_lens.data(), table.data(), max_blocks, max_q, max_seq};
  }
  cuda::AttentionDims dims(const Case& c) const { return {num_tokens, c.heads, c.kv_heads, c.dim, scale}; }
  // The CPU backend's attention over these caches for queries q (the batch's own by default).
  std::vector<float> cpu_attention(const Case& c, const std::vector<float>& queries) const {
    cpu::ThreadPool pool(1);
    std::vector<float> out(queries.size());
    const cpu::KvCacheView view{k, v, c.bf16 ? DType::kBF16 : DType::kF32, slots, row};
    const cpu::AttentionBatchView batch_view{num_seqs, query_starts.data(), c.seq_lens.data(), table.data(),
                                             max_blocks};
    cpu::paged_attention(pool, queries.data(), num_tokens, view, batch_view, c.heads, c.kv_heads, c.dim, scale,
                         out.data());
    return out;
  }
};

inline PagedBatch make_paged_batch(const Case& c, uint32_t seed) {
  PagedBatch b;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  b.num_seqs = static_cast<int>(c.seq_lens.size());
  int total_blocks = 0;
  for (int s = 0; s < b.num_seqs; ++s) {
    const int blocks = (c.seq_lens[s] + 15) / 16;
    b.max_blocks = std::max(b.max_blocks, blocks);
    total_blocks += blocks;
    b.max_seq = std::max(b.max_seq, c.seq_lens[s]);
    b.max_q = std::max(b.max_q, c.q_lens[s]);
  }
  b.max_blocks += 1;  // an unused entry in every table row
  if (c.seq_bound > 0) {
    b.max_seq = c.seq_bound;
    b.max_blocks = std::max(b.max_blocks, (c.seq_bound + 15) / 16);
  }
  const int num_physical = total_blocks + 3;
  std::vector<int> physical(num_physical);
  for (int i = 0; i < num_physical; ++i) physical[i] = i;
  std::shuffle(physical.begin(), physical.end(), rng);
  b.table.assign(static_cast<size_t>(b.num_seqs) * b.max_blocks, -7);
  int next = 0;
  for (int s = 0; s < b.num_seqs; ++s)
    for (int i = 0; i < (c.seq_lens[s] + 15) / 16; ++i) b.table[s * b.max_blocks + i] = physical[next++];
  b.query_starts = {0};
  for (int s = 0; s < b.num_seqs; ++s) b.query_starts.push_back(b.query_starts.back() + c.q_lens[s]);
  b.num_tokens = b.query_starts.back();
  b.row = int64_t{c.kv_heads} * c.dim;
  b.slots = int64_t{num_physical} * 16;
  b.k_f32.resize(b.slots * b.row);
  b.v_f32.resize(b.slots * b.row);
  for (float& x : b.k_f32) x = normal(rng) * 1.5f;
  for (float& x : b.v_f32) x = normal(rng);
  b.k_bf16.resize(b.k_f32.size());
  b.v_bf16.resize(b.v_f32.size());
  for (size_t i = 0; i < b.k_bf16.size(); ++i) {
    b.k_bf16[i] = cpu::f32_to_bf16(b.k_f32[i]);
    b.v_bf16[i] = cpu::f32_to_bf16(b.v_f32[i]);
  }
  b.q.resize(static_cast<size_t>(int64_t{b.num_tokens} * c.heads * c.dim));
  for (float& x : b.q) x = normal(rng);
  b.scale = 1.0f / std::sqrt(static_cast<float>(c.dim));
  b.k = c.bf16 ? static_cast<void*>(b.k_bf16.data()) : static_cast<void*>(b.k_f32.data());
  b.v = c.bf16 ? static_cast<void*>(b.v_bf16.data()) : static_cast<void*>(b.v_f32.data());
  b.reference = b.cpu_attention(c, b.q);
  return b;
}

}  // namespace bm::engine::emu
