#pragma once
// The backend interface: memory and the handful of ops a Llama-family decoder needs. Model code
// (engine/models) is written once against it; the CPU backend (engine/backend/cpu) is the reference and a CUDA
// backend will implement the same interface from a dlopen'ed plugin. Nothing here assumes the bytes live in host
// memory: buffers are handles, and bytes cross between host and backend only through the explicit copies.
//
// Conventions of every op:
// - Ops run in the order they are issued (a stream). A backend may run them asynchronously; copy_to_host and
//   synchronize() wait for everything issued before them.
// - Tensors are row-major 2-D views [rows, cols] of a buffer; a vector is one row. Activations are F32.
//   Weights are BF16 (as checkpoints ship them) or F32. Index tensors (token ids, positions, slots, tables) are I32.
// - Accumulation is F32 whatever the storage type.
// - Shapes and dtypes are preconditions: a mismatch is a bug in the caller and aborts (BM_CHECK), it is not an
//   error status. Index *values* (token ids, block ids) are validated by the caller before they are uploaded.
// - An output never aliases an input unless the op says so.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "engine/backend/communicator.h"
#include "engine/backend/quantized_matrix.h"
#include "engine/model/dtype.h"

namespace bm::engine {

// Backend memory. Only the backend that allocated a buffer interprets it.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual int64_t size_bytes() const = 0;
};

// A row-major [rows, cols] view of a buffer, starting offset_bytes into it.
struct Tensor {
  Buffer* buffer = nullptr;
  int64_t offset_bytes = 0;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;

  int64_t num_elements() const { return rows * cols; }
  int64_t num_bytes() const { return num_elements() * dtype_size(dtype); }
  // Rows [first, first + count) of this view.
  Tensor row_slice(int64_t first, int64_t count) const {
    return Tensor{buffer, offset_bytes + first * cols * dtype_size(dtype), dtype, count, cols};
  }
  // The same bytes seen with another row length (e.g. [tokens, heads * head_dim] as [tokens * heads, head_dim]).
  Tensor reshaped(int64_t new_rows, int64_t new_cols) const {
    return Tensor{buffer, offset_bytes, dtype, new_rows, new_cols};
  }
};

// A weight-only quantized [rows, cols] matrix in a backend's buffer (quantized_matrix.h says what it means):
// `data` is a U8 view [1, quantized_matrix_bytes(shape)] holding the layout that backend chose.
struct QuantizedMatrix {
  QuantizedShape shape;
  Tensor data;
};

// Tokens per paged-KV block; the same constant as engine/models/causal_lm.h (DESIGN §5).
inline constexpr int32_t kKvBlockSize = 16;

// One layer's paged KV cache. K and V are each [num_blocks * kKvBlockSize, num_kv_heads * head_dim], i.e. the
// layout [num_blocks, kKvBlockSize, num_kv_heads, head_dim]; row `slot` = block * kKvBlockSize + offset.
struct KvCacheLayer {
  Tensor k;
  Tensor v;
};

// Where each sequence's tokens sit in one step. All tensors are I32 on the backend.
struct AttentionMetadata {
  int32_t num_seqs = 0;
  Tensor query_starts;  // [1, num_seqs + 1]: q rows of sequence s are [query_starts[s], query_starts[s + 1])
  Tensor seq_lens;      // [1, num_seqs]: tokens of s in the cache after this step's store_kv (cached + new)
  Tensor block_tables;  // [num_seqs, max_blocks_per_seq]: physical block ids; unused entries are ignored
  // Bounds a device backend sizes its launch with; the CPU backend ignores them.
  int32_t max_query_len = 0;
  int32_t max_seq_len = 0;
};

struct AttentionShape {
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;  // divides num_heads (grouped-query attention)
  int32_t head_dim = 0;
  float scale = 1.0f;  // usually 1 / sqrt(head_dim)
};

// The angles of a rotary embedding (Backend::rope_store_kv): positions × inv_freq as rope() computes them, or, when
// cos is set, per-token cosine and sine tables as rope_table() reads them (the decoder's M-RoPE).
struct RotaryAngles {
  Tensor positions;  // [1, n] I32
  Tensor inv_freq;   // [1, head_dim / 2] F32
  Tensor cos, sin;   // [n, head_dim / 2] F32; empty (buffer null) for positions × inv_freq

  bool from_table() const { return cos.buffer != nullptr; }
};

// Backend::rope_store_kv's preconditions, one copy for every backend (a mismatch is a caller bug: it aborts).
inline void check_rope_store_kv_shapes(const Tensor& qkv, const RotaryAngles& angles, const AttentionShape& shape,
                                       const Tensor& slot_mapping, const KvCacheLayer& cache, const Tensor& q_out) {
  const int64_t hd = shape.head_dim, q_size = int64_t{shape.num_heads} * hd, kv_size = cache.k.cols;
  BM_CHECK(hd > 0 && hd % 2 == 0 && kv_size == int64_t{shape.num_kv_heads} * hd);
  BM_CHECK(qkv.cols == q_size + 2 * kv_size && q_out.rows == qkv.rows && q_out.cols == q_size);
  BM_CHECK(slot_mapping.num_elements() == qkv.rows &&
           (q_out.buffer != qkv.buffer || q_out.offset_bytes != qkv.offset_bytes));
  if (angles.from_table()) {
    BM_CHECK(angles.cos.rows == qkv.rows && angles.cos.cols == hd / 2 && angles.sin.rows == angles.cos.rows &&
             angles.sin.cols == angles.cos.cols);
  } else {
    BM_CHECK(angles.positions.num_elements() == qkv.rows && angles.inv_freq.num_elements() == hd / 2);
  }
}

// A recorded sequence of ops (Backend::end_capture), replayed as a whole (a CUDA graph on the GPU).
class StepGraph {
 public:
  virtual ~StepGraph() = default;
  // What the replay launches: the graph's nodes (kernels, copies, memsets) on a GPU, the recorded ops on a host
  // backend. What issue 21's fused decode step is counted in (bm_backend_ops_bench).
  virtual int64_t num_nodes() const = 0;
};

// Memory of the device a backend allocates from (host RAM for the CPU backend).
struct MemoryInfo {
  int64_t total_bytes = 0;
  int64_t free_bytes = 0;  // what allocate() can still hand out now
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual MemoryInfo memory_info() const = 0;

  // ---- memory
  virtual absl::StatusOr<std::unique_ptr<Buffer>> allocate(int64_t num_bytes) = 0;
  // Copies host bytes into the view (src.size() == dst.num_bytes()). The host bytes may be reused on return.
  virtual void copy_to_device(std::span<const std::byte> src, const Tensor& dst) = 0;
  // Copies a linear layer's weight [out_features, in_features] (nn.Linear's layout) into dst. A backend may keep
  // it in the layout its matrix kernels read (the CPU backend packs BF16 and F16 weights for its GEMM): afterwards
  // only linear() reads dst, and embedding() where dst is a tied head's embedding table.
  virtual void copy_linear_weight_to_device(std::span<const std::byte> src, const Tensor& dst) {
    copy_to_device(src, dst);
  }
  // Waits for the ops issued before it, then copies the view into host memory.
  virtual void copy_to_host(const Tensor& src, std::span<std::byte> dst) = 0;
  virtual void synchronize() = 0;
  // The first device fault since the backend was created (a kernel that faulted, a failed launch or copy), or OK.
  // A device backend records such a fault instead of aborting the process, skips the ops issued after it, and
  // reports it here; the fault is sticky (a faulted CUDA context cannot be used again), so the engine marks
  // itself failed and the daemon stays up. Call after synchronize() or copy_to_host() to see the step's faults.
  virtual absl::Status device_status() const { return absl::OkStatus(); }

  // ---- step graphs: a step's ops recorded once and replayed, so a decode step costs one launch instead of
  // hundreds (CUDA graphs). Between begin_capture and end_capture the ops are recorded, NOT run, and no copy,
  // allocation or synchronize may be issued (a caller bug: it aborts). A replay runs the recorded ops on the very
  // same tensors with the very same shapes and scalar arguments: everything that changes from step to step must
  // reach the ops through buffer contents uploaded before the replay. A graph is tied to the buffers it was
  // recorded on: it must not outlive them.
  virtual bool records_steps() const { return false; }
  virtual absl::Status begin_capture() { return absl::UnimplementedError("this backend cannot record steps"); }
  virtual absl::StatusOr<std::unique_ptr<StepGraph>> end_capture() {
    return absl::FailedPreconditionError("end_capture without begin_capture");
  }
  virtual void replay(const StepGraph& graph) = 0;

  // ---- ops
  // ---- weight-only quantized linear layers (GPTQ / AWQ). A backend that runs them returns the bytes its layout
  // of `shape` takes; the default refuses, and the loader reports that sentence before allocating anything.
  virtual absl::StatusOr<int64_t> quantized_matrix_bytes(const QuantizedShape& shape) const {
    (void)shape;
    return absl::UnimplementedError(absl::StrCat(
        "the ", std::string(name()), " backend does not run GPTQ/AWQ quantized weights yet (the cpu backend does)"));
  }
  // Repacks a neutral host matrix into dst (dst.shape == src.shape, dst.data sized by quantized_matrix_bytes).
  virtual void copy_quantized_to_device(const QuantizedMatrixSource& src, const QuantizedMatrix& dst) {
    (void)src, (void)dst;
    BM_CHECK(false && "copy_quantized_to_device on a backend without quantized weights");
  }
  // out = x · Wᵀ (+ bias) with W dequantized inside the kernel, F32 accumulation. x [n, cols] F32; bias [1, rows]
  // or null; out [n, rows] F32.
  virtual void quantized_linear(const Tensor& x, const QuantizedMatrix& weight, const Tensor* bias, const Tensor& out) {
    (void)x, (void)weight, (void)bias, (void)out;
    BM_CHECK(false && "quantized_linear on a backend without quantized weights");
  }

  // out[i] = table[ids[i]]. table [vocab, hidden] BF16/F32; ids [1, n]; out [n, hidden] F32.
  virtual void embedding(const Tensor& table, const Tensor& ids, const Tensor& out) = 0;
  // out[i] = weight * (x[i] / sqrt(mean(x[i]^2) + eps)). x, out [n, d] F32 (may alias); weight [1, d].
  virtual void rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) = 0;
  // The residual stream and the next norm in one pass: x += residual, then out = rms_norm(x) as above (the same
  // arithmetic as add() then rms_norm()). x, residual, out [n, d] F32; out may alias residual, never x.
  virtual void add_rms_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, float eps,
                            const Tensor& out) = 0;
  // out = x · weightᵀ (+ bias). x [n, k] F32; weight [m, k] as stored by PyTorch's nn.Linear; bias [1, m] or
  // null; out [n, m] F32.
  virtual void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, const Tensor& out) = 0;
  // Rotary embedding in place, rotate-half (GPT-NeoX) pairing as in Hugging Face Llama/Qwen2: within each head,
  // element i pairs with i + head_dim/2 and turns by positions[t] * inv_freq[i]. x [n, heads * head_dim] F32;
  // positions [1, n]; inv_freq [1, head_dim / 2] F32. The scaling variants (default, llama3, …) differ only in
  // inv_freq, which the model computes.
  virtual void rope(const Tensor& x, const Tensor& positions, const Tensor& inv_freq, int32_t head_dim) = 0;
  // Writes the new tokens' K and V rows ([n, kv_heads * head_dim] F32) into cache row slot_mapping[t]; a
  // negative slot is skipped (the padding rows of a captured step).
  virtual void store_kv(const Tensor& k, const Tensor& v, const Tensor& slot_mapping, const KvCacheLayer& cache) = 0;
  // q, k and v from one GEMM (the model's fused q/k/v weight) into attention's inputs in one pass: qkv [n, (num_heads
  // + 2 * num_kv_heads) * head_dim] F32, each row q | k | v. q_out [n, num_heads * head_dim] F32 = q rotated; k
  // rotated and v go to cache row slot_mapping[t] (negative: skipped, as store_kv). The same arithmetic as rope() —
  // rope_table() when angles.from_table() — on q and k, then store_kv(). qkv is only read.
  virtual void rope_store_kv(const Tensor& qkv, const RotaryAngles& angles, const AttentionShape& shape,
                             const Tensor& slot_mapping, const KvCacheLayer& cache, const Tensor& q_out) = 0;
  // Causal attention over the paged cache, for prefill chunks and decode alike: query row t of sequence s sits at
  // position seq_lens[s] - (query_starts[s+1] - query_starts[s]) + (t - query_starts[s]) and attends to cache
  // positions [0, that position]. q, out [n, num_heads * head_dim] F32. The cache must already hold this step's
  // K/V (store_kv first).
  virtual void paged_attention(const Tensor& q, const KvCacheLayer& cache, const AttentionMetadata& metadata,
                               const AttentionShape& shape, const Tensor& out) = 0;
  // out = silu(gate) * up, elementwise. [n, d] F32; out may alias gate or up.
  virtual void silu_mul(const Tensor& gate, const Tensor& up, const Tensor& out) = 0;
  // silu_mul on the MLP's gate and up from one GEMM (the fused gate/up weight): out[t, i] = silu(gate_up[t, i]) *
  // gate_up[t, d + i], the same arithmetic. gate_up [n, 2d] F32; out [n, d] F32, not aliasing gate_up.
  virtual void silu_mul_fused(const Tensor& gate_up, const Tensor& out) = 0;
  // out = a + b, elementwise F32; out may alias a or b (the residual stream).
  virtual void add(const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // out[r] = x[row_ids[r]] (picks the rows that need logits). x [n, d] F32; row_ids [1, r]; out [r, d].
  virtual void gather_rows(const Tensor& x, const Tensor& row_ids, const Tensor& out) = 0;

  // ---- tensor parallelism: collectives over the ranks of `comm` (communicator.h), in order with this backend's
  // other ops (and recorded with them in a step graph). Optional: a backend that runs them with that kind of
  // communicator says so with runs_collectives, which the tensor-parallel loader checks (a status, not a crash);
  // the default op aborts, naming itself and the backend.
  virtual bool runs_collectives(const Communicator& comm) const {
    (void)comm;
    return false;
  }
  // x [rows, cols] F32, the same shape on every rank: x = the sum of every rank's x.
  virtual void all_reduce_sum(const Tensor& x, Communicator& comm) {
    (void)x, (void)comm;
    unimplemented_encoder_op("all_reduce_sum");
  }

  // ---- encoder ops: what the Qwen2.5-VL vision tower needs beyond the decoder's ops. Optional: a backend that
  // runs them says so with runs_encoder_ops(), which the vision encoder checks at load (a status, not a crash);
  // the defaults abort, naming the op and the backend.
  virtual bool runs_encoder_ops() const { return false; }
  // Rotary embedding in place from per-token angles, rotate-half pairing: within each head, elements i and
  // i + head_dim/2 turn by the angle whose cosine and sine are cos[t, i] and sin[t, i] (the vision tower's 2-D
  // RoPE, whose angles come from (row, column) positions rather than one position × inv_freq). x [n, heads *
  // head_dim] F32; cos, sin [n, head_dim / 2] F32.
  virtual void rope_table(const Tensor& x, const Tensor& cos, const Tensor& sin, int32_t head_dim) {
    (void)x, (void)cos, (void)sin, (void)head_dim;
    unimplemented_encoder_op("rope_table");
  }
  // Attention without a KV cache over packed segments, bidirectional: the rows [segment_starts[s],
  // segment_starts[s + 1]) attend to each other and to no other row (cu_seqlens of varlen flash attention).
  // q, out [n, num_heads * head_dim] F32; k, v [n, num_kv_heads * head_dim] F32; segment_starts [1, segments + 1]
  // I32, non-decreasing from 0 to n.
  virtual void segment_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& segment_starts,
                                 const AttentionShape& shape, const Tensor& out) {
    (void)q, (void)k, (void)v, (void)segment_starts, (void)shape, (void)out;
    unimplemented_encoder_op("segment_attention");
  }
  // out = x · Φ(x), the exact (erf) GELU of torch's nn.GELU(). [n, d] F32; out may alias x.
  virtual void gelu(const Tensor& x, const Tensor& out) {
    (void)x, (void)out;
    unimplemented_encoder_op("gelu");
  }

  // What the host sampler needs from rows of logits without copying whole rows (a 152k vocabulary × 256 rows is
  // 155 MB a step). For each row r of logits [rows, vocab] F32, with the token ids listed for it,
  // listed_ids[listed_starts[r] .. listed_starts[r + 1]) (distinct ids of the vocabulary: the tokens the sampler
  // adjusts, by penalties, bias or masking):
  // - listed_logits[j] = logits[r, listed_ids[j]], the raw value, for every listed j of row r;
  // - cand_ids[r, 0..k) and cand_logits[r, 0..k): the k largest logits of row r among the ids NOT listed for it,
  //   best first, ties to the lower id; when fewer than k ids are unlisted, the rest are id -1 with logit -inf;
  // - log_sum_exp[r] = log(sum over the whole row of exp(logit)), listed ids included — only when log_sum_exp
  //   is not empty: it costs an exp per logit, which a host backend would otherwise pay for nothing when no row
  //   asks for log-probabilities;
  // - tempered_lse[r] = log(sum over the ids NOT listed for r of exp(logit * inverse_temperatures[r])) — only when
  //   tempered_lse is not empty: the probability mass beyond the candidates that top-p sampling needs to know
  //   whether its nucleus lies inside them (-inf when no id is unlisted).
  // Structured output: row r is constrained when mask_rows is not empty and mask_rows[r] >= 0; then every result
  // above describes the row with the ids that row masks[mask_rows[r]] forbids at -inf (bit id % 32 of word id / 32
  // clear; bits past the vocabulary are ignored), as if the caller had masked the row first: a listed id it forbids
  // gets -inf, a forbidden id is never a candidate (the row pads with -1 sooner), and both sums leave it out. The
  // mask comes first so that the logprobs and the top-p mass describe the constrained distribution (as vLLM's) and
  // the candidates are tokens the grammar allows; unconstrained rows (-1) read no mask.
  // Shapes: listed_starts [1, rows + 1] I32; listed_ids and listed_logits [1, L] (I32, F32) — with L = 0 both may
  // be empty views (buffer null); cand_ids [rows, k] I32; cand_logits [rows, k] F32; log_sum_exp [1, rows] F32 or
  // empty; inverse_temperatures and tempered_lse [1, rows] F32, both empty or neither; mask_rows [1, rows] I32 with
  // values in [-1, M) and masks [M, ceil(vocab / 32)] U32 (M >= 1), both empty or neither; 1 <= k <=
  // kMaxCandidates. `logits` may be overwritten at the listed positions (the rest of it is left as it was).
  static constexpr int32_t kMaxCandidates = 64;
  virtual void top_candidates(const Tensor& logits, const Tensor& listed_starts, const Tensor& listed_ids, int32_t k,
                              const Tensor& listed_logits, const Tensor& cand_ids, const Tensor& cand_logits,
                              const Tensor& log_sum_exp, const Tensor& inverse_temperatures, const Tensor& tempered_lse,
                              const Tensor& mask_rows, const Tensor& masks) = 0;

 private:
  [[noreturn]] void unimplemented_encoder_op(std::string_view op) const {
    const std::string message = absl::StrCat(std::string(op), " is not implemented on the ", std::string(name()),
                                             " backend yet (the cpu backend runs it)");
    ::bm::common::check_failed(message.c_str(), __FILE__, __LINE__);
  }
};

}  // namespace bm::engine
