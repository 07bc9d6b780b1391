#include "engine/models/decoder_lm.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "engine/models/candidate_packing.h"
#include "engine/models/mrope_positions.h"
#include "engine/models/mrope_rotary_table.h"

namespace bm::engine {
namespace {

static_assert(kKvBlockSize == kBlockSize, "the backend's and the runtime's KV block sizes must agree");

enum Scratch : size_t {
  kStepInts,  // the index tables, one buffer (StepIntLayout)
  kX,
  kH,
  kQ,
  kK,
  kV,
  kAttentionOut,
  kGate,
  kUp,
  kFused,  // the fused q|k|v projection's output, later the fused gate|up one's (never live at once)
  kLastHidden,
  kLogits,
  // Sampling candidates (forward_candidates).
  kCandidateInputs,   // every input of a candidate step, one upload (CandidatePacking)
  kCandidateOutputs,  // every result of a candidate step, one read-back (CandidatePacking)
  kNumScratch,
};

// A scratch slot's view for one step.
struct ScratchShape {
  Scratch slot;
  DType dtype;
  int64_t rows, cols;
};

// views[shape.slot] = a [rows, cols] view of that slot's buffer, for every shape (a slot grows when it must).
absl::Status view_scratch(std::vector<ScratchTensor>& scratch, Backend& backend, std::span<const ScratchShape> shapes,
                          Tensor* views) {
  for (const ScratchShape& shape : shapes) {
    absl::StatusOr<Tensor> view = scratch[shape.slot].view(backend, shape.dtype, shape.rows, shape.cols);
    if (!view.ok()) return view.status();
    views[shape.slot] = *view;
  }
  return absl::OkStatus();
}

std::span<const std::byte> as_bytes(const std::vector<float>& values) {
  return std::as_bytes(std::span(values));
}

// Writes values at `offset` ints into the packed step tables.
void put(std::vector<int32_t>& packed, int64_t offset, const std::vector<int32_t>& values) {
  std::copy(values.begin(), values.end(), packed.begin() + offset);
}

}  // namespace

DecoderLM::StepIntLayout DecoderLM::StepIntLayout::of(int64_t n, int64_t num_logits, int64_t num_seqs,
                                                      int64_t blocks_per_seq) {
  StepIntLayout layout;
  int64_t at = 0;
  auto take = [&](int64_t count) {
    const int64_t start = at;
    at += (count + 15) / 16 * 16;  // every table starts on a 64-byte boundary
    return start;
  };
  layout.token_ids = take(n);
  layout.positions = take(n);
  layout.slot_mapping = take(n);
  layout.logits_rows = take(num_logits);
  layout.query_starts = take(num_seqs + 1);
  layout.seq_lens = take(num_seqs);
  layout.block_tables = take(num_seqs * blocks_per_seq);
  layout.total = std::max<int64_t>(at, 1);
  return layout;
}

absl::StatusOr<std::unique_ptr<DecoderLM>> DecoderLM::create(DecoderSpec spec, std::unique_ptr<Backend> backend,
                                                             std::unique_ptr<DecoderWeights> weights,
                                                             DType kv_cache_dtype) {
  if (kv_cache_dtype != DType::kF32 && kv_cache_dtype != DType::kBF16) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache dtype ", std::string(dtype_name(kv_cache_dtype)), " is not supported (F32 or BF16)"));
  }
  std::unique_ptr<DecoderLM> model(
      new DecoderLM(std::move(spec), std::move(backend), std::move(weights), kv_cache_dtype));
  const std::vector<float>& inv_freq = model->spec_.rope_inv_freq;
  absl::StatusOr<std::unique_ptr<Buffer>> table =
      model->backend_->allocate(static_cast<int64_t>(inv_freq.size() * sizeof(float)));
  if (!table.ok()) return table.status();
  model->rope_table_ = std::move(*table);
  model->inv_freq_ = Tensor{model->rope_table_.get(), 0, DType::kF32, 1, static_cast<int64_t>(inv_freq.size())};
  model->backend_->copy_to_device(as_bytes(inv_freq), model->inv_freq_);
  return model;
}

DecoderLM::DecoderLM(DecoderSpec spec, std::unique_ptr<Backend> backend, std::unique_ptr<DecoderWeights> weights,
                     DType kv_cache_dtype)
    : spec_(std::move(spec)),
      backend_(std::move(backend)),
      weights_(std::move(weights)),
      kv_cache_dtype_(kv_cache_dtype),
      scratch_(kNumScratch) {
  info_.architecture = spec_.architecture;
  info_.vocab_size = spec_.vocab_size;
  info_.max_position_embeddings = spec_.max_position_embeddings;
  info_.num_layers = spec_.num_layers;
  info_.kv_bytes_per_token =
      int64_t{2} * spec_.num_layers * spec_.num_kv_heads * spec_.head_dim * dtype_size(kv_cache_dtype_);
  info_.weight_bytes = weights_->num_bytes;
  info_.decode_read_bytes = decode_read_weight_bytes(spec_, weights_->num_bytes, weights_->embed_tokens.num_bytes());
  if (spec_.quantization) info_.quantization = quant_scheme_name(*spec_.quantization);
  for (const LayerWeights& layer : weights_->layers) {
    (layer.qkv.present() ? layouts_.fused_qkv : layouts_.split_qkv) = true;
    (layer.gate_up.present() ? layouts_.fused_gate_up : layouts_.split_gate_up) = true;
  }
}

absl::Status DecoderLM::allocate_kv_cache(int32_t num_blocks) {
  if (num_blocks <= 0 || num_blocks > std::numeric_limits<int32_t>::max() / kBlockSize) {
    return absl::InvalidArgumentError(absl::StrCat("cannot size a KV cache of ", num_blocks, " blocks"));
  }
  if (graphs_ != nullptr) graphs_->clear();  // recorded on the cache about to be freed
  kv_cache_.clear();
  kv_buffers_.clear();
  num_kv_blocks_ = 0;
  const int64_t rows = int64_t{num_blocks} * kBlockSize;
  const int64_t cols = int64_t{spec_.num_kv_heads} * spec_.head_dim;
  std::vector<std::unique_ptr<Buffer>> buffers;
  std::vector<KvCacheLayer> layers;
  for (int32_t layer = 0; layer < spec_.num_layers; ++layer) {
    KvCacheLayer cache;
    for (Tensor* half : {&cache.k, &cache.v}) {
      absl::StatusOr<std::unique_ptr<Buffer>> buffer = backend_->allocate(rows * cols * dtype_size(kv_cache_dtype_));
      if (!buffer.ok()) {
        return absl::ResourceExhaustedError(absl::StrCat("cannot allocate a KV cache of ", num_blocks, " blocks (",
                                                         info_.kv_bytes_per_token * rows,
                                                         " bytes): ", buffer.status().message()));
      }
      *half = Tensor{buffer->get(), 0, kv_cache_dtype_, rows, cols};
      buffers.push_back(std::move(*buffer));
    }
    layers.push_back(cache);
  }
  kv_buffers_ = std::move(buffers);
  kv_cache_ = std::move(layers);
  num_kv_blocks_ = num_blocks;
  return absl::OkStatus();
}

void DecoderLM::upload(const std::vector<int32_t>& values, const Tensor& tensor) {
  backend_->copy_to_device(std::as_bytes(std::span(values)), tensor);
}

absl::StatusOr<DecoderLM::StepTensors> DecoderLM::step_tensors(std::vector<ScratchTensor>& scratch, int64_t n,
                                                               int64_t num_logits, int32_t num_seqs,
                                                               int32_t blocks_per_seq) {
  const int64_t q_size = int64_t{spec_.num_heads} * spec_.head_dim;
  const int64_t kv_size = int64_t{spec_.num_kv_heads} * spec_.head_dim;
  const int64_t ff = spec_.intermediate_size;
  const StepIntLayout layout = StepIntLayout::of(n, num_logits, num_seqs, blocks_per_seq);
  // Rows only for the projections' forms some layer has (fused, or apart for quantized layers).
  const int64_t split_qkv = layouts_.split_qkv ? n : 0, split_gate_up = layouts_.split_gate_up ? n : 0;
  const ScratchShape shapes[] = {
      {kStepInts, DType::kI32, 1, layout.total},
      {kX, DType::kF32, n, spec_.hidden_size},
      {kH, DType::kF32, n, spec_.hidden_size},
      {kQ, DType::kF32, n, q_size},
      {kK, DType::kF32, split_qkv, kv_size},
      {kV, DType::kF32, split_qkv, kv_size},
      {kAttentionOut, DType::kF32, n, q_size},
      {kGate, DType::kF32, n, ff},
      {kUp, DType::kF32, split_gate_up, ff},
      {kFused, DType::kF32, n,
       std::max(layouts_.fused_qkv ? q_size + 2 * kv_size : 0, layouts_.fused_gate_up ? 2 * ff : 0)},
      {kLastHidden, DType::kF32, num_logits, spec_.hidden_size},
      {kLogits, DType::kF32, num_logits, spec_.vocab_size},
  };
  Tensor views[kNumScratch];
  if (absl::Status s = view_scratch(scratch, *backend_, shapes, views); !s.ok()) return s;
  StepTensors tensors;
  tensors.layout = layout;
  tensors.ints = views[kStepInts];
  auto table = [&](int64_t offset, int64_t rows, int64_t cols) {
    return Tensor{tensors.ints.buffer, tensors.ints.offset_bytes + offset * 4, DType::kI32, rows, cols};
  };
  tensors.token_ids = table(layout.token_ids, 1, n);
  tensors.positions = table(layout.positions, 1, n);
  tensors.slot_mapping = table(layout.slot_mapping, 1, n);
  tensors.logits_rows = table(layout.logits_rows, 1, num_logits);
  tensors.attention.num_seqs = num_seqs;
  tensors.attention.query_starts = table(layout.query_starts, 1, num_seqs + 1);
  tensors.attention.seq_lens = table(layout.seq_lens, 1, num_seqs);
  tensors.attention.block_tables = table(layout.block_tables, num_seqs, blocks_per_seq);
  tensors.x = views[kX];
  tensors.h = views[kH];
  tensors.q = views[kQ];
  tensors.k = views[kK];
  tensors.v = views[kV];
  tensors.attention_out = views[kAttentionOut];
  tensors.gate = views[kGate];
  tensors.up = views[kUp];
  tensors.qkv = views[kFused].reshaped(layouts_.fused_qkv ? n : 0, q_size + 2 * kv_size);
  tensors.gate_up = views[kFused].reshaped(layouts_.fused_gate_up ? n : 0, 2 * ff);
  tensors.last_hidden = views[kLastHidden];
  tensors.logits = views[kLogits];
  return tensors;
}

absl::StatusOr<DecoderLM::StepTensors> DecoderLM::prepare(const StepInputs& step,
                                                          const std::vector<int32_t>& token_ids) {
  absl::StatusOr<StepTensors> tensors =
      step_tensors(scratch_, static_cast<int64_t>(token_ids.size()), static_cast<int64_t>(step.logits_rows.size()),
                   step.num_seqs, step.max_blocks_per_seq);
  if (!tensors.ok()) return tensors.status();
  tensors->attention.max_query_len = step.max_query_len;
  tensors->attention.max_seq_len = step.max_seq_len;
  upload_tables(*tensors, token_ids, step.positions, step.slot_mapping, step.logits_rows, step.query_starts,
                step.seq_lens, step.block_tables);
  tensors->splices = step.splices;
  if (!step.mrope_rows[0].empty()) {
    // Only prompts with media get here (make_step_inputs); text steps keep the 1-D RoPE, bit for bit the same.
    const int64_t n = static_cast<int64_t>(token_ids.size());
    const RotaryTable table = mrope_rotary_table(spec_.rope_inv_freq, spec_.mrope_section,
                                                 {step.mrope_rows[0], step.mrope_rows[1], step.mrope_rows[2]});
    absl::StatusOr<Tensor> both = rotary_scratch_.view(*backend_, DType::kF32, 2 * n, table.half);
    if (!both.ok()) return both.status();
    tensors->mrope = true;
    tensors->rotary_cos = both->row_slice(0, n);
    tensors->rotary_sin = both->row_slice(n, n);
    backend_->copy_to_device(std::as_bytes(std::span(table.cos)), tensors->rotary_cos);
    backend_->copy_to_device(std::as_bytes(std::span(table.sin)), tensors->rotary_sin);
  }
  return tensors;
}

void DecoderLM::upload_tables(const StepTensors& t, const std::vector<int32_t>& token_ids,
                              const std::vector<int32_t>& positions, const std::vector<int32_t>& slot_mapping,
                              const std::vector<int32_t>& logits_rows, const std::vector<int32_t>& query_starts,
                              const std::vector<int32_t>& seq_lens, const std::vector<int32_t>& block_tables) {
  const StepIntLayout& l = t.layout;
  packed_.assign(static_cast<size_t>(l.total), 0);
  put(packed_, l.token_ids, token_ids);
  put(packed_, l.positions, positions);
  put(packed_, l.slot_mapping, slot_mapping);
  put(packed_, l.logits_rows, logits_rows);
  put(packed_, l.query_starts, query_starts);
  put(packed_, l.seq_lens, seq_lens);
  put(packed_, l.block_tables, block_tables);
  upload(packed_, t.ints);
}

void DecoderLM::run_layer(int32_t index, const StepTensors& t) {
  Backend& b = *backend_;
  const LayerWeights& layer = weights_->layers[static_cast<size_t>(index)];
  // Attention block: x += o_proj(attention(rope(q), rope(k), v)). The previous layer's MLP output is still in h:
  // its residual add is fused into this layer's first norm.
  if (index == 0)
    b.rms_norm(t.x, layer.input_norm, spec_.rms_norm_eps, t.h);
  else
    b.add_rms_norm(t.x, t.h, layer.input_norm, spec_.rms_norm_eps, t.h);
  const AttentionShape shape{spec_.num_heads, spec_.num_kv_heads, spec_.head_dim,
                             1.0f / std::sqrt(static_cast<float>(spec_.head_dim))};
  const KvCacheLayer& cache = kv_cache_[static_cast<size_t>(index)];
  if (layer.qkv.present()) {
    // One GEMM for q|k|v, then one op rotates q into t.q and k into the cache beside v.
    apply_linear(b, t.h, layer.qkv, t.qkv);
    const RotaryAngles angles = t.mrope ? RotaryAngles{{}, {}, t.rotary_cos, t.rotary_sin}
                                        : RotaryAngles{t.positions, inv_freq_, {}, {}};
    b.rope_store_kv(t.qkv, angles, shape, t.slot_mapping, cache, t.q);
  } else {
    apply_linear(b, t.h, layer.q, t.q);
    apply_linear(b, t.h, layer.k, t.k);
    apply_linear(b, t.h, layer.v, t.v);
    if (t.mrope) {
      b.rope_table(t.q, t.rotary_cos, t.rotary_sin, spec_.head_dim);
      b.rope_table(t.k, t.rotary_cos, t.rotary_sin, spec_.head_dim);
    } else {
      b.rope(t.q, t.positions, inv_freq_, spec_.head_dim);
      b.rope(t.k, t.positions, inv_freq_, spec_.head_dim);
    }
    b.store_kv(t.k, t.v, t.slot_mapping, cache);
  }
  b.paged_attention(t.q, cache, t.attention, shape, t.attention_out);
  apply_linear(b, t.attention_out, layer.o, t.h);
  if (comm_ != nullptr) b.all_reduce_sum(t.h, *comm_);  // o_proj is row-parallel: each rank holds a partial sum
  // MLP block: x += down(silu(gate(h)) * up(h)), the add left to the next layer's first norm (or run_step).
  b.add_rms_norm(t.x, t.h, layer.post_attention_norm, spec_.rms_norm_eps, t.h);
  if (layer.gate_up.present()) {
    apply_linear(b, t.h, layer.gate_up, t.gate_up);
    b.silu_mul_fused(t.gate_up, t.gate);
  } else {
    apply_linear(b, t.h, layer.gate, t.gate);
    apply_linear(b, t.h, layer.up, t.up);
    b.silu_mul(t.gate, t.up, t.gate);
  }
  apply_linear(b, t.gate, layer.down, t.h);
  if (comm_ != nullptr) b.all_reduce_sum(t.h, *comm_);  // so is down_proj
}

void DecoderLM::compute(const StepTensors& t) {
  backend_->embedding(weights_->embed_tokens, t.token_ids, t.x);
  for (const EmbeddingSplice& splice : t.splices) {
    const std::span<const float> rows(splice.data, static_cast<size_t>(int64_t{splice.count} * spec_.hidden_size));
    backend_->copy_to_device(std::as_bytes(rows), t.x.row_slice(splice.row, splice.count));
  }
  for (int32_t layer = 0; layer < spec_.num_layers; ++layer) run_layer(layer, t);
  backend_->add(t.x, t.h, t.x);  // the last MLP's residual add
  if (t.logits.rows == 0) return;
  // Only the rows that want logits go through the final norm and the vocabulary projection.
  backend_->gather_rows(t.x, t.logits_rows, t.last_hidden);
  backend_->rms_norm(t.last_hidden, weights_->final_norm, spec_.rms_norm_eps, t.last_hidden);
  backend_->linear(t.last_hidden, weights_->lm_head, nullptr, t.logits);
}

absl::StatusOr<Tensor> DecoderLM::run_step(const ForwardBatch& batch) {
  if (kv_cache_.empty()) {
    return absl::FailedPreconditionError("forward called before allocate_kv_cache");
  }
  const StepLimits limits{spec_.vocab_size, num_kv_blocks_, spec_.max_position_embeddings, spec_.hidden_size};
  absl::StatusOr<StepInputs> step = make_step_inputs(batch, limits);
  if (!step.ok()) return step.status();
  if (graphs_ != nullptr && step->splices.empty() && step->mrope_rows[0].empty()) {
    if (std::optional<DecodeGraphShape> shape = graphs_->shape_for(*step))
      return run_graphed_step(*step, batch.token_ids, *shape);
  }
  absl::StatusOr<StepTensors> tensors = prepare(*step, batch.token_ids);
  if (!tensors.ok()) return tensors.status();
  compute(*tensors);
  return tensors->logits;
}

absl::StatusOr<Tensor> DecoderLM::run_graphed_step(const StepInputs& step, const std::vector<int32_t>& token_ids,
                                                   DecodeGraphShape shape) {
  // Views of the graph scratch, reserved at the largest shape by enable_decode_graphs: nothing moves.
  absl::StatusOr<StepTensors> tensors =
      step_tensors(graph_scratch_, shape.num_seqs, shape.num_seqs, shape.num_seqs, shape.blocks_per_seq());
  if (!tensors.ok()) return tensors.status();
  StepTensors& t = *tensors;
  t.attention.max_query_len = 1;
  t.attention.max_seq_len = shape.max_seq_len;  // a bound: the kernels read each sequence's length from seq_lens
  const PaddedDecodeInputs in = DecodeGraphs::pad(step, token_ids, shape);
  upload_tables(t, in.token_ids, in.positions, in.slot_mapping, in.logits_rows, in.query_starts, in.seq_lens,
                in.block_tables);
  if (const StepGraph* graph = graphs_->find(shape)) {
    backend_->replay(*graph);
    graphs_->count_replay();
  } else {
    // A shape the load did not capture (past capture_decode_graphs' budget, or a tensor-parallel rank, which
    // captures lazily only): recorded now, mid-traffic.
    record_graph(t, shape);
    graphs_->count_eager();
  }
  return t.logits.row_slice(0, step.num_seqs);
}

void DecoderLM::record_graph(const StepTensors& t, DecodeGraphShape shape) {
  // Run the step once uncaptured (which also grows the backend's scratch to the shape: a capture cannot), then
  // record its ops without running them.
  compute(t);
  absl::Status captured = backend_->begin_capture();
  if (captured.ok()) {
    compute(t);
    absl::StatusOr<std::unique_ptr<StepGraph>> graph = backend_->end_capture();
    if (graph.ok())
      graphs_->add(shape, *std::move(graph));
    else
      captured = graph.status();
  }
  if (!captured.ok()) {
    graphs_->disable(std::string(captured.message()));
    std::fprintf(stderr, "bmserver engine: decode graphs turned off, steps run uncaptured: %s\n",
                 std::string(captured.message()).c_str());
  }
}

absl::Status DecoderLM::capture_decode_graphs(std::chrono::milliseconds budget) {
  if (graphs_ == nullptr) return absl::OkStatus();
  if (kv_cache_.empty()) return absl::FailedPreconditionError("decode graphs are captured after allocate_kv_cache");
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::steady_clock::now() - start; };
  // Every row is padding (slot -1: nothing is stored in the cache; each attends to one position of block 0), so
  // capturing touches no sequence's state. The shortest context bound first, over every batch size: short
  // contexts are the common case, and a longer bound is only reached by the steps that need it.
  const StepInputs no_sequences;
  int32_t wanted = 0;
  for (int32_t bound : graphs_->context_bounds()) {
    for (int32_t batch : graphs_->batch_sizes()) {
      ++wanted;
      const DecodeGraphShape shape{batch, bound};
      if (elapsed() >= budget || !graphs_->stats().disabled.empty() || graphs_->find(shape) != nullptr) continue;
      absl::StatusOr<StepTensors> tensors = step_tensors(graph_scratch_, batch, batch, batch, shape.blocks_per_seq());
      if (!tensors.ok()) return tensors.status();
      tensors->attention.max_query_len = 1;
      tensors->attention.max_seq_len = bound;
      const PaddedDecodeInputs in = DecodeGraphs::pad(no_sequences, {}, shape);
      upload_tables(*tensors, in.token_ids, in.positions, in.slot_mapping, in.logits_rows, in.query_starts,
                    in.seq_lens, in.block_tables);
      record_graph(*tensors, shape);
      if (graphs_->find(shape) != nullptr) graphs_->count_captured_at_load();
    }
  }
  backend_->synchronize();
  if (absl::Status device = backend_->device_status(); !device.ok()) return device;
  const double ms = std::chrono::duration<double, std::milli>(elapsed()).count();
  graphs_->set_load_capture_ms(ms);
  const DecodeGraphStats& stats = graphs_->stats();
  const bool all = stats.captured_at_load == wanted;
  std::fprintf(stderr, "bmserver engine: captured %lld of %d decode graphs at load in %.0f ms (budget %lld ms)%s\n",
               static_cast<long long>(stats.captured_at_load), wanted, ms, static_cast<long long>(budget.count()),
               !stats.disabled.empty() ? "; a capture failed, so graphs are off"
               : all                   ? ""
                                       : "; the other shapes are captured on first use");
  return absl::OkStatus();
}

absl::Status DecoderLM::enable_decode_graphs(int32_t max_seqs) {
  if (max_seqs < 1) return absl::InvalidArgumentError("decode graphs need max_seqs of at least 1");
  if (!backend_->records_steps())
    return absl::UnimplementedError(
        absl::StrCat("the ", std::string(backend_->name()), " backend cannot record decode steps"));
  auto graphs = std::make_unique<DecodeGraphs>(max_seqs, spec_.max_position_embeddings);
  std::vector<ScratchTensor> scratch(kNumScratch);
  absl::StatusOr<StepTensors> largest =
      step_tensors(scratch, max_seqs, max_seqs, max_seqs, graphs->max_blocks_per_seq());
  if (!largest.ok()) return largest.status();
  graph_scratch_ = std::move(scratch);
  graphs_ = std::move(graphs);
  return absl::OkStatus();
}

absl::Status DecoderLM::last_logits_rows(std::span<const int32_t> rows, std::vector<float>& out) {
  const int64_t vocab = spec_.vocab_size;
  out.resize(rows.size() * static_cast<size_t>(vocab));
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= last_logits_.rows)
      return absl::InvalidArgumentError(
          absl::StrCat("row ", rows[i], " is not among the last step's ", last_logits_.rows, " rows of logits"));
    backend_->copy_to_host(
        last_logits_.row_slice(rows[i], 1),
        std::as_writable_bytes(std::span(out).subspan(i * static_cast<size_t>(vocab), static_cast<size_t>(vocab))));
  }
  return backend_->device_status();
}

absl::StatusOr<int64_t> DecoderLM::decode_layer_nodes(int32_t num_seqs) {
  if (num_seqs < 1) return absl::InvalidArgumentError("a decode step has at least one sequence");
  if (kv_cache_.empty()) return absl::FailedPreconditionError("decode_layer_nodes called before allocate_kv_cache");
  if (!backend_->records_steps())
    return absl::UnimplementedError(
        absl::StrCat("the ", std::string(backend_->name()), " backend cannot record decode steps"));
  // Padding rows only (slot -1), as capture_decode_graphs records them: no sequence's cache is touched.
  const DecodeGraphShape shape{num_seqs, kBlockSize};
  absl::StatusOr<StepTensors> tensors = step_tensors(scratch_, num_seqs, num_seqs, num_seqs, shape.blocks_per_seq());
  if (!tensors.ok()) return tensors.status();
  StepTensors& t = *tensors;
  t.attention.max_query_len = 1;
  t.attention.max_seq_len = shape.max_seq_len;
  const PaddedDecodeInputs in = DecodeGraphs::pad(StepInputs{}, {}, shape);
  upload_tables(t, in.token_ids, in.positions, in.slot_mapping, in.logits_rows, in.query_starts, in.seq_lens,
                in.block_tables);
  compute(t);  // the dry run: a capture can neither grow the backend's scratch nor time GEMM shapes
  if (absl::Status begun = backend_->begin_capture(); !begun.ok()) return begun;
  run_layer(std::min(1, spec_.num_layers - 1), t);  // a layer after the first: its norm adds the residual
  absl::StatusOr<std::unique_ptr<StepGraph>> graph = backend_->end_capture();
  if (!graph.ok()) return graph.status();
  backend_->synchronize();
  if (absl::Status device = backend_->device_status(); !device.ok()) return device;
  return (*graph)->num_nodes();
}

DecodeGraphStats DecoderLM::decode_graph_stats() const {
  return graphs_ != nullptr ? graphs_->stats() : DecodeGraphStats{};
}

absl::Status DecoderLM::forward(const ForwardBatch& batch, std::vector<float>& logits) {
  logits.clear();
  if (absl::Status s = begin_forward(batch); !s.ok()) return s;
  return finish_logits(logits);
}

absl::Status DecoderLM::forward_candidates(const ForwardBatch& batch, const CandidateRequest& request,
                                           Candidates& out) {
  out = Candidates{};
  if (absl::Status s = begin_forward(batch); !s.ok()) return s;
  return finish_candidates(request, out);
}

// Everything up to the logits is queued on the backend here and nothing is read back, so a device backend returns
// while the step runs; the first read-back (or sync) is in the finish call.
absl::Status DecoderLM::begin_forward(const ForwardBatch& batch) {
  begun_logits_.reset();
  absl::StatusOr<Tensor> logits = run_step(batch);
  if (!logits.ok()) return logits.status();
  begun_logits_ = *logits;
  return absl::OkStatus();
}

absl::Status DecoderLM::finish_logits(std::vector<float>& logits) {
  logits.clear();
  if (!begun_logits_.has_value()) return absl::FailedPreconditionError("finish_logits without a begin_forward");
  const Tensor device_logits = *std::exchange(begun_logits_, std::nullopt);
  if (device_logits.rows == 0) {
    backend_->synchronize();
    return backend_->device_status();
  }
  logits.resize(static_cast<size_t>(device_logits.num_elements()));
  backend_->copy_to_host(device_logits, std::as_writable_bytes(std::span(logits)));
  if (absl::Status device = backend_->device_status(); !device.ok()) {
    logits.clear();
    return device;
  }
  return absl::OkStatus();
}

absl::Status DecoderLM::finish_candidates(const CandidateRequest& request, Candidates& out) {
  out = Candidates{};
  if (!begun_logits_.has_value()) return absl::FailedPreconditionError("finish_candidates without a begin_forward");
  const std::optional<Tensor> logits = std::exchange(begun_logits_, std::nullopt);
  const int64_t rows = logits->rows;
  if (rows == 0) {
    backend_->synchronize();
    return backend_->device_status();
  }
  const int64_t num_listed = static_cast<int64_t>(request.listed_ids.size());
  if (static_cast<int64_t>(request.listed_starts.size()) != rows + 1 || request.listed_starts.front() != 0 ||
      request.listed_starts.back() != num_listed || request.k < 1 || request.k > Backend::kMaxCandidates) {
    return absl::InvalidArgumentError(absl::StrCat("a candidate request for ", rows, " rows has ",
                                                   request.listed_starts.size(), " offsets for ", num_listed,
                                                   " listed ids and k ", request.k));
  }
  for (int32_t id : request.listed_ids)
    if (id < 0 || id >= spec_.vocab_size)
      return absl::InvalidArgumentError(absl::StrCat("listed token ", id, " is outside the vocabulary"));
  const bool wants_mass = !request.inverse_temperatures.empty();
  if (wants_mass && static_cast<int64_t>(request.inverse_temperatures.size()) != rows)
    return absl::InvalidArgumentError(absl::StrCat("a candidate request for ", rows, " rows has ",
                                                   request.inverse_temperatures.size(), " inverse temperatures"));
  const int64_t mass_rows = wants_mass ? rows : 0;
  const int64_t words = mask_words(spec_.vocab_size);
  const bool masked = !request.mask_rows.empty();
  const int64_t num_masks = static_cast<int64_t>(request.masks.size()) / words;
  if (masked != (num_masks > 0) || static_cast<int64_t>(request.masks.size()) != num_masks * words ||
      (masked && static_cast<int64_t>(request.mask_rows.size()) != rows))
    return absl::InvalidArgumentError(absl::StrCat("a candidate request for ", rows, " rows has ",
                                                   request.mask_rows.size(), " mask rows and ", request.masks.size(),
                                                   " mask words (", words, " per mask)"));
  for (int32_t m : request.mask_rows)
    if (m < -1 || m >= num_masks)
      return absl::InvalidArgumentError(absl::StrCat("mask row ", m, " is not one of the ", num_masks, " masks"));
  const CandidatePacking packing = CandidatePacking::of(request, rows, words);
  const ScratchShape shapes[] = {{kCandidateInputs, DType::kU32, 1, packing.input_words},
                                 {kCandidateOutputs, DType::kU32, 1, packing.output_words}};
  Tensor views[kNumScratch];
  if (absl::Status s = view_scratch(scratch_, *backend_, shapes, views); !s.ok()) return s;
  // Typed views of the two packed buffers; a region of 0 words (nothing listed, no sum wanted) is a view of 0
  // elements.
  auto view = [&](const Tensor& packed, CandidatePacking::Region region, DType dtype, int64_t r, int64_t c) {
    BM_CHECK(r * c == region.size);
    return Tensor{packed.buffer, packed.offset_bytes + region.offset * int64_t{sizeof(uint32_t)}, dtype, r, c};
  };
  const Tensor& in = views[kCandidateInputs];
  const Tensor& outputs = views[kCandidateOutputs];
  packing.pack_inputs(request, candidate_inputs_);
  backend_->copy_to_device(std::as_bytes(std::span(candidate_inputs_)), in);
  Tensor mask_rows, masks;  // empty unless some row is constrained
  if (masked) {
    mask_rows = view(in, packing.mask_rows, DType::kI32, 1, rows);
    masks = view(in, packing.masks, DType::kU32, num_masks, words);
  }
  backend_->top_candidates(
      *logits, view(in, packing.listed_starts, DType::kI32, 1, rows + 1),
      view(in, packing.listed_ids, DType::kI32, 1, num_listed), request.k,
      view(outputs, packing.listed_logits, DType::kF32, 1, num_listed),
      view(outputs, packing.ids, DType::kI32, rows, request.k),
      view(outputs, packing.logits, DType::kF32, rows, request.k),
      view(outputs, packing.log_sum_exp, DType::kF32, 1, packing.log_sum_exp.size),
      view(in, packing.inverse_temperatures, DType::kF32, 1, mass_rows),
      view(outputs, packing.tempered_lse, DType::kF32, 1, mass_rows), mask_rows, masks);
  last_logits_ = *logits;
  // One device→host copy for every result of the step (it waits for the step once).
  candidate_outputs_.resize(static_cast<size_t>(packing.output_words));
  backend_->copy_to_host(outputs, std::as_writable_bytes(std::span(candidate_outputs_)));
  packing.unpack_outputs(candidate_outputs_, out);
  if (absl::Status device = backend_->device_status(); !device.ok()) {
    out = Candidates{};
    return device;
  }
  return absl::OkStatus();
}

// ---- Qwen2.5-VL

absl::Status DecoderLM::attach_vision(const Checkpoint& checkpoint, const VisionConfig& config) {
  if (config.out_hidden_size != spec_.hidden_size)
    return absl::InvalidArgumentError(absl::StrCat("config.json: the vision tower's out_hidden_size ",
                                                   config.out_hidden_size, " is not the language model's hidden_size ",
                                                   spec_.hidden_size));
  vision_config_ = config;
  if (checkpoint.find("visual.patch_embed.proj.weight") == nullptr) {
    vision_refusal_ = "the checkpoint holds no vision tower (visual.* tensors), so it is served for text only";
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<VisionEncoder>> encoder = VisionEncoder::load(checkpoint, config, *backend_);
  if (absl::IsUnimplemented(encoder.status())) {
    vision_refusal_ = std::string(encoder.status().message());
    return absl::OkStatus();
  }
  if (!encoder.ok()) return encoder.status();
  vision_ = *std::move(encoder);
  return absl::OkStatus();
}

absl::Status DecoderLM::media_support() const {
  if (vision_ != nullptr) return absl::OkStatus();
  if (!vision_config_) return CausalLM::media_support();
  return absl::FailedPreconditionError(vision_refusal_);
}

absl::StatusOr<std::shared_ptr<SequenceMedia>> DecoderLM::prepare_media(std::span<const int32_t> prompt_ids,
                                                                        const PromptMedia* media) const {
  if (!vision_config_) return CausalLM::prepare_media(prompt_ids, media);
  const VisionConfig& config = *vision_config_;
  const bool has_media = media != nullptr && !media->items.empty();
  const auto is_pad = [&](int32_t id) { return id == config.image_token_id || id == config.video_token_id; };
  const int64_t num_pads = std::count_if(prompt_ids.begin(), prompt_ids.end(), is_pad);
  if (!has_media && num_pads == 0) return std::shared_ptr<SequenceMedia>();
  if (!has_media)
    return absl::InvalidArgumentError(
        absl::StrCat("the prompt holds ", num_pads, " image or video pad tokens but no image or video came with it"));
  if (absl::Status s = media_support(); !s.ok()) return s;
  auto out = std::make_shared<SequenceMedia>();
  out->num_prompt_tokens = static_cast<int32_t>(prompt_ids.size());
  std::vector<VisionGrid> image_grids, video_grids;
  std::vector<float> seconds;
  // Runs of pad tokens, matched to the items in order: kind, length and pixel count must all agree.
  size_t next = 0;
  for (size_t i = 0; i < prompt_ids.size();) {
    if (!is_pad(prompt_ids[i])) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < prompt_ids.size() && prompt_ids[end] == prompt_ids[i]) ++end;
    const bool image = prompt_ids[i] == config.image_token_id;
    const char* kind = image ? "image" : "video";
    if (next == media->items.size())
      return absl::InvalidArgumentError(absl::StrCat("the prompt holds more runs of ", kind, " pad tokens than the ",
                                                     media->items.size(), " images and videos that came with it"));
    const MediaItem& item = media->items[next];
    if ((item.kind == MediaKind::kImage) != image)
      return absl::InvalidArgumentError(absl::StrCat("media item ", next, " is ",
                                                     item.kind == MediaKind::kImage ? "an image" : "a video",
                                                     " but its place in the prompt holds ", kind, " pad tokens"));
    if (static_cast<int64_t>(end - i) != item.num_tokens(config.merge_unit()))
      return absl::InvalidArgumentError(
          absl::StrCat("media item ", next, " takes ", item.num_tokens(config.merge_unit()), " pad tokens (grid ",
                       item.grid.t, "x", item.grid.h, "x", item.grid.w, ") but the prompt holds ", end - i));
    // The tower's activations grow with the image (~77 KB a patch with the 3B's config, 5 GB at the processor's
    // default max_pixels): an image that would need more than kMaxEncodeActivationBytes is refused before anything
    // is allocated.
    if (item.grid.num_patches() * config.activation_bytes_per_patch() > kMaxEncodeActivationBytes)
      return absl::InvalidArgumentError(absl::StrCat(
          "media item ", next, " has ", item.grid.num_patches(), " patches; encoding it would take ",
          item.grid.num_patches() * config.activation_bytes_per_patch() >> 20,
          " MiB of activations, over the 2048 MiB this server allows for one image or video; send a smaller one or "
          "lower max_pixels (mm_processor_kwargs)"));
    if (static_cast<int64_t>(item.pixel_values.size()) != item.grid.num_patches() * config.patch_dim())
      return absl::InvalidArgumentError(absl::StrCat("media item ", next, " has ", item.pixel_values.size(),
                                                     " pixel values; its grid needs ",
                                                     item.grid.num_patches() * config.patch_dim()));
    (image ? image_grids : video_grids).push_back(item.grid);
    if (!image) seconds.push_back(item.second_per_grid_t);
    out->items.push_back(SequenceMedia::Item{static_cast<int32_t>(i), static_cast<int32_t>(end - i),
                                             item.hash != 0 ? item.hash : media_hash(item), nullptr});
    ++next;
    i = end;
  }
  if (next != media->items.size())
    return absl::InvalidArgumentError(absl::StrCat(
        media->items.size(), " images and videos came with the prompt but it ", "holds pad tokens for ", next));
  MropeInputs inputs;
  inputs.image_token_id = config.image_token_id;
  inputs.video_token_id = config.video_token_id;
  inputs.spatial_merge_size = config.spatial_merge_size;
  inputs.tokens_per_second = config.tokens_per_second;
  inputs.image_grids = image_grids;
  inputs.video_grids = video_grids;
  inputs.second_per_grid_ts = seconds;
  absl::StatusOr<MropePositions> positions = mrope_positions(prompt_ids, inputs);
  if (!positions.ok()) return positions.status();
  for (int r = 0; r < 3; ++r) {
    for (int64_t p : positions->rows[r]) {
      if (p < 0 || p >= spec_.max_position_embeddings)
        return absl::InvalidArgumentError(absl::StrCat("an M-RoPE position of ", p, " is beyond the model's ",
                                                       spec_.max_position_embeddings, " positions"));
      out->positions[r].push_back(static_cast<int32_t>(p));
    }
  }
  out->delta = static_cast<int32_t>(positions->delta);
  return out;
}

absl::StatusOr<std::vector<std::vector<float>>> DecoderLM::encode_media(std::span<const MediaItem* const> items) {
  if (absl::Status s = media_support(); !s.ok()) return s;
  std::vector<VisionGrid> grids;
  for (const MediaItem* item : items) grids.push_back(item->grid);
  std::vector<float> joined;  // one item needs no copy
  if (items.size() > 1)
    for (const MediaItem* item : items) joined.insert(joined.end(), item->pixel_values.begin(), item->pixel_values.end());
  absl::StatusOr<std::vector<float>> all =
      vision_->encode(items.size() == 1 ? std::span<const float>(items[0]->pixel_values) : joined, grids);
  if (!all.ok()) return all.status();
  // The tower's output is the items' rows one after the other (grid order).
  std::vector<std::vector<float>> out;
  size_t at = 0;
  for (const MediaItem* item : items) {
    const size_t count = static_cast<size_t>(item->num_tokens(vision_config_->merge_unit()) * spec_.hidden_size);
    BM_CHECK(at + count <= all->size());
    out.emplace_back(all->begin() + static_cast<std::ptrdiff_t>(at),
                     all->begin() + static_cast<std::ptrdiff_t>(at + count));
    at += count;
  }
  BM_CHECK(at == all->size());
  return out;
}

}  // namespace bm::engine
