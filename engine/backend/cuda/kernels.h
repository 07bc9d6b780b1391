#pragma once
// The CUDA kernels behind CudaBackend, as host functions that launch on a stream. Pointers are device
// pointers; `bf16` flags say whether a weight-like operand holds bfloat16 (else float32). Each launcher checks
// its shapes with BM_CHECK before launching, so a kernel never sees an impossible size. One family per .cu file.
#include <cstdint>

#include <cuda_runtime_api.h>

#include <cstddef>

#include "engine/backend/quantized_matrix.h"

namespace bm::engine::cuda {

// A weight-like operand whose element type is chosen at run time (BF16 or F32).
struct WeightPtr {
  const void* data = nullptr;
  bool bf16 = true;
};

// ---- embedding.cu: out[i] = table[ids[i]]; out[r] = x[row_ids[r]]. An id outside the table yields a row of
// NaN (ids are validated on the host before upload; this only makes a caller bug visible).
void launch_embedding(WeightPtr table, int64_t vocab, int64_t hidden, const int32_t* ids, int64_t n, float* out,
                      cudaStream_t stream);
// x is [x_rows, d]; a row id outside [0, x_rows) yields a row of NaN (the caller validates ids).
void launch_gather_rows(const float* x, int64_t x_rows, int64_t d, const int32_t* row_ids, int64_t num_rows, float* out,
                        cudaStream_t stream);

// ---- candidates.cu: Backend::top_candidates (backend.h) for rows [rows, vocab] of logits: one block per row, or,
// with slices > 1, a row split across that many blocks (slices of at least 4 ids; fewer are launched when the
// vocabulary is short) and a merge kernel, same results (the sums within float rounding of the merge order).
// Overwrites the listed positions of `logits`. listed_starts [rows + 1] and the listed ids are validated by the
// caller; an id outside the vocabulary gets listed_logits NaN and is otherwise ignored. mask_rows [rows] and masks
// [num_masks, ceil(vocab / 32)] (both null, num_masks 0, when no row is constrained) are validated by the caller
// too; a mask row outside [0, num_masks) leaves its row unconstrained.
inline constexpr int32_t kMaxTopCandidates = 64;  // Backend::kMaxCandidates
void launch_top_candidates(float* logits, int64_t rows, int64_t vocab, const int32_t* listed_starts,
                           const int32_t* listed_ids, int64_t num_listed, int32_t k, float* listed_logits,
                           int32_t* cand_ids, float* cand_logits, float* log_sum_exp /* may be null */,
                           const float* inverse_temperatures /* may be null, with tempered_lse */, float* tempered_lse,
                           const int32_t* mask_rows, const uint32_t* masks, int64_t num_masks, int32_t slices,
                           void* workspace, int64_t workspace_bytes, cudaStream_t stream);
// Blocks per row for `rows` rows on num_sms SMs: 1 once the rows alone fill the SMs, else up to 64, each slice at
// least 2048 ids long (at batch 1 with a 152k vocabulary: 64 blocks instead of 1).
int32_t top_candidates_slices(int64_t rows, int64_t vocab, int32_t num_sms);
// The workspace launch_top_candidates needs with that many slices (0 with one block per row).
int64_t top_candidates_workspace_bytes(int64_t rows, int64_t vocab, int32_t slices);

// ---- norm.cu: out[i] = w * (x[i] / sqrt(mean(x[i]^2) + eps)); x and out may alias.
void launch_rms_norm(const float* x, int64_t n, int64_t d, WeightPtr weight, float eps, float* out,
                     cudaStream_t stream);
// x += residual, then out = rms_norm(x), one pass per row; out may alias residual (not x).
void launch_add_rms_norm(float* x, const float* residual, int64_t n, int64_t d, WeightPtr weight, float eps, float* out,
                         cudaStream_t stream);

// ---- rope.cu: rotate-half rotary embedding in place.
void launch_rope(float* x, int64_t n, int64_t num_heads, int64_t head_dim, const int32_t* positions,
                 const float* inv_freq, cudaStream_t stream);
// The same rotation with per-token angles: cos, sin [n, head_dim / 2] (pair i of token t turns by the angle whose
// cosine and sine are cos[t, i], sin[t, i]); Backend::rope_table.
void launch_rope_table(float* x, int64_t n, int64_t num_heads, int64_t head_dim, const float* cos, const float* sin,
                       cudaStream_t stream);

// ---- elementwise.cu
void launch_silu_mul(const float* gate, const float* up, int64_t count, float* out, cudaStream_t stream);
// out[t, i] = silu(gate_up[t, i]) * gate_up[t, d + i] for gate_up [n, 2d], out [n, d] (Backend::silu_mul_fused).
void launch_silu_mul_fused(const float* gate_up, int64_t n, int64_t d, float* out, cudaStream_t stream);
void launch_add(const float* a, const float* b, int64_t count, float* out, cudaStream_t stream);
// out = x * Φ(x), the exact (erf) GELU; out may alias x.
void launch_gelu(const float* x, int64_t count, float* out, cudaStream_t stream);
// dst = bf16(src), round to nearest even (what PyTorch's .to(torch.bfloat16) does).
void launch_f32_to_bf16(const float* src, int64_t count, uint16_t* dst, cudaStream_t stream);
// out[i, j] += bias[j] for out [n, m].
void launch_add_bias(float* out, int64_t n, int64_t m, WeightPtr bias, cudaStream_t stream);

// ---- gemm_fallback.cu: out[n, m] = x[n, k] · w[m, k]ᵀ (both BF16 or both F32; F32 out), a plain tiled kernel
// for the shapes cuBLASLt cannot run (gemm.cpp). n rows in at most 65535 tiles of 16.
void launch_gemm_fallback(const void* w, const void* x, bool bf16, int64_t m, int64_t n, int64_t k, float* out,
                          cudaStream_t stream);

// ---- gemv.cu: out[n, m] = x[n, k] · w[m, k]ᵀ (+ bias) for BF16 w, F32 x and n <= kGemvMaxRows, F32
// accumulation, W read once (one warp per output column). gemm.cpp picks it per shape when it beats cuBLASLt.
constexpr int64_t kGemvMaxRows = 8;
// Whether the 16-byte path runs (k % 8 == 0, w and x 16-byte aligned); otherwise single-element loads.
bool gemv_vectorized(const void* w, const float* x, int64_t k);
void launch_gemv_bf16(const void* w, const float* x, int64_t m, int64_t n, int64_t k, WeightPtr bias, float* out,
                      cudaStream_t stream);

// ---- kv_cache.cu: cache row slot_mapping[t] = k[t] / v[t] (converted to the cache's dtype).
struct KvCachePtr {
  void* k = nullptr;
  void* v = nullptr;
  bool bf16 = true;
  int64_t num_slots = 0;
  int64_t row_size = 0;  // num_kv_heads * head_dim
};
void launch_store_kv(const float* k, const float* v, int64_t n, const int32_t* slot_mapping, const KvCachePtr& cache,
                     cudaStream_t stream);

// ---- rope_store_kv.cu: qkv [n, (num_heads + 2 * num_kv_heads) * head_dim], rows q | k | v (num_kv_heads * head_dim
// = cache.row_size): q_out [n, num_heads * head_dim] = rope(q); rope(k) and v into cache row slot_mapping[t]
// (negative: skipped). The angles: cos/sin tables [n, head_dim / 2] when cos is set, else positions × inv_freq.
struct RotaryPtr {
  const int32_t* positions = nullptr;
  const float* inv_freq = nullptr;
  const float* cos = nullptr;
  const float* sin = nullptr;
};
void launch_rope_store_kv(const float* qkv, int64_t n, int64_t num_heads, int64_t head_dim, const RotaryPtr& angles,
                          const int32_t* slot_mapping, const KvCachePtr& cache, float* q_out, cudaStream_t stream);

// ---- attention_*.cu
struct AttentionBatchPtr {
  int32_t num_seqs = 0;
  const int32_t* query_starts = nullptr;  // [num_seqs + 1]
  const int32_t* seq_lens = nullptr;      // [num_seqs]
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  int64_t max_blocks_per_seq = 0;
  int32_t max_query_len = 0;
  int32_t max_seq_len = 0;
};
struct AttentionDims {
  int32_t num_tokens = 0;  // query rows
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  float scale = 1.0f;
};

// Query lengths at or above this go through the tensor-core prefill kernel (where it applies); shorter ones
// (decode, speculative tails) through the split-sequence kernel, which reads each K/V row once per GQA group.
inline constexpr int32_t kPrefillMinQueryLen = 8;

// True when launch_attention_prefill handles this shape (BF16 cache, head_dim 64 or 128).
bool prefill_kernel_supports(bool bf16_cache, int32_t head_dim);

// Query tokens per prefill tile; one thread block takes this many (token, head) rows of a GQA group.
inline constexpr int32_t kPrefillTileRows = 128;

// The prefill kernel's tile list (built on the device from query_starts): 1 + 2 * tiles int32.
struct PrefillWorkspace {
  int32_t* data = nullptr;
  int64_t num_ints = 0;
};
int64_t attention_prefill_workspace_ints(int32_t num_tokens, int32_t num_seqs);

// FlashAttention-2 style prefill over the paged cache on bf16 tensor cores (mma.sync m16n8k16, S, P and O in
// registers, online softmax); handles the rows of sequences whose query length is >= kPrefillMinQueryLen.
void launch_attention_prefill(const float* q, const KvCachePtr& cache, const AttentionBatchPtr& batch,
                              const AttentionDims& dims, const PrefillWorkspace& workspace, float* out,
                              cudaStream_t stream);

// Scratch for the split-sequence kernel's partial results; grows on demand (owned by the backend).
struct AttentionWorkspace {
  float* data = nullptr;
  int64_t num_floats = 0;
};
// How many floats of workspace launch_attention_decode needs for this batch.
int64_t attention_decode_workspace_floats(const AttentionDims& dims, int32_t max_seq_len, int32_t num_sms);

// Split-sequence attention (any head_dim up to 256, F32 or BF16 cache), GQA-aware: one block reads a K/V row
// once for all the query heads of its group. With only_short_queries it skips rows of sequences whose query
// length is >= kPrefillMinQueryLen (those are the prefill kernel's).
void launch_attention_decode(const float* q, const KvCachePtr& cache, const AttentionBatchPtr& batch,
                             const AttentionDims& dims, bool only_short_queries, int32_t num_sms,
                             const AttentionWorkspace& workspace, float* out, cudaStream_t stream);

// ---- encoder_attention.cu: Backend::segment_attention, bidirectional attention within packed segments (rows
// [segment_starts[s], segment_starts[s + 1]) attend to each other only), F32, no KV cache. q, out [n, num_heads *
// head_dim]; k, v [n, num_kv_heads * head_dim]; dims.num_tokens is unused (n is passed). segment_starts
// [num_segments + 1] stays on the device, validated by the caller (non-decreasing from 0 to n; the kernels clamp
// offsets to [0, n], so a bad list gives wrong rows, never an out-of-bounds read).
inline constexpr int32_t kSegmentTileRows = 64;     // query rows per block
inline constexpr int32_t kSegmentMaxHeadDim = 128;  // any head_dim in [1, 128] (shared memory: see the .cu)
// The device-built tile list: 1 + 3 * tiles int32.
struct SegmentWorkspace {
  int32_t* data = nullptr;
  int64_t num_ints = 0;
};
int64_t segment_attention_workspace_ints(int64_t n, int32_t num_segments);
void launch_segment_attention(const float* q, const float* k, const float* v, int64_t n, const int32_t* segment_starts,
                              int32_t num_segments, const AttentionDims& dims, const SegmentWorkspace& workspace,
                              float* out, cudaStream_t stream);

// ---- quantized_linear.cu: weight-only GPTQ / AWQ linear (the file comment describes the layout and kernels).
inline constexpr int32_t kQuantTileColumns = 4;  // output columns per tile of the device layout
inline constexpr int64_t kQuantGemvMaxRows = 8;  // activation rows up to which the GEMV kernel runs

// Byte offsets of the sections of one quantized matrix in its device buffer (each 256-byte aligned).
struct QuantizedDeviceLayout {
  int64_t num_tiles = 0;
  int64_t word_rows = 0;  // cols / (32 / bits)
  int64_t num_groups = 0;
  int64_t words_offset = 0;
  int64_t params_offset = 0;
  int64_t perm_offset = 0;
  int64_t total_bytes = 0;
};
QuantizedDeviceLayout quantized_device_layout(const QuantizedShape& shape);
// The repack at load, on the host: dst holds quantized_device_layout(source.shape).total_bytes.
void pack_quantized_for_device(const QuantizedMatrixSource& source, std::byte* dst);

// A packed matrix on the device (data 16-byte aligned).
struct QuantizedWeightPtr {
  const std::byte* data = nullptr;
  QuantizedShape shape;
};
// out[r, i] = x[r, perm[i]]: the activations in packed order, for an act-order (permuted) matrix.
void launch_quantized_permute(const float* x, int64_t n, const QuantizedWeightPtr& weight, float* out,
                              cudaStream_t stream);
// dense [rows, cols] F32 in activation column order: the same numbers as dequantize() (quantized_matrix.h).
void launch_quantized_dequantize(const QuantizedWeightPtr& weight, float* dense, cudaStream_t stream);
// out[n, rows] = x · Wᵀ (+ bias) for 1 <= n <= kQuantGemvMaxRows; x [n, cols] F32 in packed order.
void launch_quantized_gemv(const float* x, int64_t n, const QuantizedWeightPtr& weight, WeightPtr bias, float* out,
                           cudaStream_t stream);
// The same for any n on tensor cores (BF16 operands, F32 accumulation), the inputs split over
// quantized_gemm_splits() blocks when the outputs alone cannot fill num_sms; workspace holds
// quantized_gemm_workspace_floats() floats (none needed when that is 0).
int32_t quantized_gemm_splits(int64_t n, const QuantizedShape& shape, int32_t num_sms);
int64_t quantized_gemm_workspace_floats(int64_t n, const QuantizedShape& shape, int32_t num_sms);
void launch_quantized_gemm(const float* x, int64_t n, const QuantizedWeightPtr& weight, WeightPtr bias, int32_t num_sms,
                           float* workspace, int64_t workspace_floats, float* out, cudaStream_t stream);

}  // namespace bm::engine::cuda
