#pragma once
// The CPU kernels behind CpuBackend, on raw host pointers. Weight-like operands come as BF16 (uint16_t bits)
// or F32; activations are F32. Each kernel is deterministic and its result for one row does not depend on how
// many rows are in the batch (a prefill and a decode of the same token give identical values).
#include <cstddef>
#include <cstdint>

#include "engine/backend/cpu/gemm_path.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/backend/quantized_matrix.h"
#include "engine/model/dtype.h"

namespace bm::engine::cpu {

// A read-only operand whose element type is chosen at run time (BF16, F16 or F32).
struct ConstData {
  const void* data = nullptr;
  DType dtype = DType::kF32;
};

// out[n, m] = x[n, k] · w[m, k]ᵀ + bias[m] (bias.data may be null).
void linear(ThreadPool& pool, const float* x, int64_t n, int64_t k, ConstData w, int64_t m, ConstData bias, float* out);

// The same product over BF16 or F16 weights packed once at load (packed_linear.cpp describes the layouts), on the
// chosen instruction path (not kAuto). Packing needs m % 16 == 0 and even k and keeps the byte size.
bool packable_linear_weight(DType dtype, int64_t m, int64_t k);
void pack_linear_weight(DType dtype, const uint16_t* w, int64_t m, int64_t k, uint16_t* packed);
void packed_linear(ThreadPool& pool, GemmPath path, const float* x, int64_t n, int64_t k, DType dtype,
                   const uint16_t* packed, int64_t m, ConstData bias, float* out);
// Rows of a packed [vocab, hidden] table widened to F32: the embedding lookup of a tied table that the head reads
// through packed_linear.
void packed_embedding(ThreadPool& pool, DType dtype, const uint16_t* packed, int64_t vocab, int64_t hidden,
                      const int32_t* ids, int64_t n, float* out);

// Weight-only quantized linear (quantized_linear.cpp describes the layout): bytes of a packed matrix, the repack
// from the neutral host form, and out[n, rows] = x[n, cols] · Wᵀ + bias.
int64_t quantized_layout_bytes(const QuantizedShape& shape);
void pack_quantized(const QuantizedMatrixSource& source, std::byte* dst);
// Which compiled clone of the quantized kernels this CPU runs: "x86-64-v4 (AVX-512)", "x86-64-v3 (AVX2, FMA,
// F16C)" or "baseline" (the loader's choice, restated for `bmserver env`).
std::string_view quantized_kernel_isa();
// `path` kAvx512Bf16 runs 4-bit weights with bf16 activations (vdpbf16ps, as the dense avx512-bf16 path); every
// other path, and 8-bit weights, keep F32 activations.
void quantized_linear(ThreadPool& pool, GemmPath path, const float* x, int64_t n, const std::byte* packed,
                      const QuantizedShape& shape, ConstData bias, float* out);
// x rounded to bf16 (nearest even), 32 floats per instruction; the CPU must have avx512-bf16.
void round_row_to_bf16(const float* x, int64_t k, uint16_t* out);

void embedding(ThreadPool& pool, ConstData table, int64_t vocab, int64_t hidden, const int32_t* ids, int64_t n,
               float* out);

void rms_norm(ThreadPool& pool, const float* x, int64_t n, int64_t d, ConstData weight, float eps, float* out);
// x += residual, then out = rms_norm(x); out may alias residual.
void add_rms_norm(ThreadPool& pool, float* x, const float* residual, int64_t n, int64_t d, ConstData weight, float eps,
                  float* out);

void rope(ThreadPool& pool, float* x, int64_t n, int64_t num_heads, int64_t head_dim, const int32_t* positions,
          const float* inv_freq);

// rope with the angles given per token: cos, sin [n, head_dim / 2] (element i and i + head_dim/2 share angle i).
void rope_table(ThreadPool& pool, float* x, int64_t n, int64_t num_heads, int64_t head_dim, const float* cos,
                const float* sin);

void gelu(ThreadPool& pool, const float* x, int64_t count, float* out);

void silu_mul(ThreadPool& pool, const float* gate, const float* up, int64_t count, float* out);
// out[t, i] = silu(gate_up[t, i]) * gate_up[t, d + i]: silu_mul on the halves of each row of gate_up [n, 2d].
void silu_mul_fused(ThreadPool& pool, const float* gate_up, int64_t n, int64_t d, float* out);

void add(ThreadPool& pool, const float* a, const float* b, int64_t count, float* out);

void gather_rows(ThreadPool& pool, const float* x, int64_t d, const int32_t* row_ids, int64_t num_rows, float* out);

// The paged KV cache of one layer, K and V each [num_slots, row_size] with row_size = num_kv_heads * head_dim.
struct KvCacheView {
  void* k = nullptr;
  void* v = nullptr;
  DType dtype = DType::kF32;  // BF16 or F32
  int64_t num_slots = 0;
  int64_t row_size = 0;
};

void store_kv(ThreadPool& pool, const float* k, const float* v, int64_t n, const int32_t* slot_mapping,
              const KvCacheView& cache);
// One row of `half` (cache.k or cache.v) at `slot` = row, converted to the cache's dtype (store_kv's conversion).
void store_cache_row(const KvCacheView& cache, void* half, int64_t slot, const float* row);

// The angles of rope_store_kv: per-token tables cos, sin [n, head_dim / 2] when cos is set, else positions ×
// inv_freq.
struct RotaryView {
  const int32_t* positions = nullptr;
  const float* inv_freq = nullptr;
  const float* cos = nullptr;
  const float* sin = nullptr;
};
// qkv [n, (num_heads + 2 * num_kv_heads) * head_dim], rows q | k | v (num_kv_heads * head_dim = cache.row_size):
// q_out = rope(q); rope(k) and v stored at slot_mapping[t] (negative: skipped). rope()/rope_table() then store_kv(),
// the same arithmetic.
void rope_store_kv(ThreadPool& pool, const float* qkv, int64_t n, int64_t num_heads, int64_t head_dim,
                   const RotaryView& angles, const int32_t* slot_mapping, const KvCacheView& cache, float* q_out);

struct AttentionBatchView {
  int32_t num_seqs = 0;
  const int32_t* query_starts = nullptr;  // num_seqs + 1
  const int32_t* seq_lens = nullptr;      // num_seqs
  const int32_t* block_tables = nullptr;  // num_seqs × max_blocks_per_seq
  int64_t max_blocks_per_seq = 0;
};

void paged_attention(ThreadPool& pool, const float* q, int64_t num_tokens, const KvCacheView& cache,
                     const AttentionBatchView& batch, int32_t num_heads, int32_t num_kv_heads, int32_t head_dim,
                     float scale, float* out);

// Bidirectional attention within packed segments: rows [starts[s], starts[s + 1]) attend to those rows only.
// q, out [n, num_heads * head_dim]; k, v [n, num_kv_heads * head_dim]; starts [num_segments + 1], 0 .. n.
void segment_attention(ThreadPool& pool, const float* q, const float* k, const float* v, int64_t n,
                       const int32_t* segment_starts, int32_t num_segments, int32_t num_heads, int32_t num_kv_heads,
                       int32_t head_dim, float scale, float* out);

}  // namespace bm::engine::cpu
