#pragma once
// The decoder-only transformer shared by Qwen2 and Llama (pre-norm RMSNorm blocks, grouped-query attention with
// RoPE over a paged KV cache, SiLU-gated MLP), written once against the Backend interface.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/models/causal_lm.h"
#include "engine/models/decode_graphs.h"
#include "engine/models/decoder_spec.h"
#include "engine/models/decoder_weights.h"
#include "engine/models/scratch_tensor.h"
#include "engine/models/step_inputs.h"
#include "engine/models/vision_encoder.h"

namespace bm::engine {

class DecoderLM final : public CausalLM {
 public:
  // kv_cache_dtype: F32 or BF16.
  static absl::StatusOr<std::unique_ptr<DecoderLM>> create(DecoderSpec spec, std::unique_ptr<Backend> backend,
                                                           std::unique_ptr<DecoderWeights> weights,
                                                           DType kv_cache_dtype);

  const CausalLMInfo& info() const override { return info_; }
  int64_t device_memory_total_bytes() const override { return backend_->memory_info().total_bytes; }
  int64_t device_memory_free_bytes() const override { return backend_->memory_info().free_bytes; }
  std::string backend_name() const override { return std::string(backend_->name()); }
  absl::Status allocate_kv_cache(int32_t num_blocks) override;
  absl::Status forward(const ForwardBatch& batch, std::vector<float>& logits) override;
  absl::Status forward_candidates(const ForwardBatch& batch, const CandidateRequest& request, Candidates& out) override;
  absl::Status begin_forward(const ForwardBatch& batch) override;
  absl::Status finish_logits(std::vector<float>& logits) override;
  absl::Status finish_candidates(const CandidateRequest& request, Candidates& out) override;
  absl::Status last_logits_rows(std::span<const int32_t> rows, std::vector<float>& out) override;
  absl::Status enable_decode_graphs(int32_t max_seqs) override;
  absl::Status capture_decode_graphs(std::chrono::milliseconds budget) override;
  DecodeGraphStats decode_graph_stats() const override;
  absl::StatusOr<int64_t> decode_layer_nodes(int32_t num_seqs) override;

  // Tensor parallelism: this model is one rank of a group (its spec and weights a shard, decoder_weights.h), and
  // sums the partial outputs of its row-parallel layers with the other ranks through `comm` (not owned; null: one
  // rank). Before the first step.
  void set_communicator(Communicator* comm) { comm_ = comm; }

  // Qwen2.5-VL: the vision tower beside the language model, on the same backend (the loader calls it for a
  // spec with M-RoPE). A checkpoint without visual.* tensors, or a backend that cannot run the tower, leaves the
  // model serving text and media_support() saying why; a tower that does not fit the model is an error.
  absl::Status attach_vision(const Checkpoint& checkpoint, const VisionConfig& config);
  absl::Status media_support() const override;
  absl::StatusOr<std::shared_ptr<SequenceMedia>> prepare_media(std::span<const int32_t> prompt_ids,
                                                               const PromptMedia* media) const override;
  absl::StatusOr<std::vector<std::vector<float>>> encode_media(std::span<const MediaItem* const> items) override;
  int64_t media_activation_bytes() const override { return vision_ != nullptr ? kMaxEncodeActivationBytes : 0; }

 private:
  // Where each index table of a step sits in the one I32 buffer they share (offsets in ints), so that a step
  // uploads them with one copy: each copy from pageable host memory costs a GPU step microseconds of host time.
  struct StepIntLayout {
    int64_t token_ids = 0, positions = 0, slot_mapping = 0, logits_rows = 0, query_starts = 0, seq_lens = 0,
            block_tables = 0, total = 0;
    static StepIntLayout of(int64_t n, int64_t num_logits, int64_t num_seqs, int64_t blocks_per_seq);
  };
  // Activations and index tables of one step, as views of the scratch buffers.
  struct StepTensors {
    StepIntLayout layout;
    Tensor ints;  // every index table below is a view of it
    Tensor token_ids, positions, slot_mapping, logits_rows;
    AttentionMetadata attention;
    Tensor x, h, q, k, v, attention_out, gate, up;
    Tensor qkv, gate_up;  // the fused projections' outputs (LayerWeights)
    Tensor last_hidden, logits;
    // Multimodal steps: media rows spliced into x after the embedding lookup, and with `mrope` the per-token
    // rotary table [n, head_dim / 2] (cos, sin) instead of the 1-D RoPE of `positions`.
    std::span<const EmbeddingSplice> splices;
    bool mrope = false;
    Tensor rotary_cos, rotary_sin;
  };

  // Which forms of the q/k/v and gate/up projections the layers have (LayerWeights: fused, or apart where
  // quantized), so that a step's scratch holds the outputs of those only.
  struct ProjectionLayouts {
    bool fused_qkv = false, split_qkv = false, fused_gate_up = false, split_gate_up = false;
  };

  DecoderLM(DecoderSpec spec, std::unique_ptr<Backend> backend, std::unique_ptr<DecoderWeights> weights,
            DType kv_cache_dtype);
  // Views of `scratch` for a step of n tokens, num_logits rows wanting logits, and num_seqs sequences whose
  // block tables are `blocks_per_seq` wide (buffers grow as needed).
  absl::StatusOr<StepTensors> step_tensors(std::vector<ScratchTensor>& scratch, int64_t n, int64_t num_logits,
                                           int32_t num_seqs, int32_t blocks_per_seq);
  absl::StatusOr<StepTensors> prepare(const StepInputs& step, const std::vector<int32_t>& token_ids);
  void upload(const std::vector<int32_t>& values, const Tensor& tensor);
  // Packs the index tables as t.layout says and uploads them in one copy.
  void upload_tables(const StepTensors& t, const std::vector<int32_t>& token_ids, const std::vector<int32_t>& positions,
                     const std::vector<int32_t>& slot_mapping, const std::vector<int32_t>& logits_rows,
                     const std::vector<int32_t>& query_starts, const std::vector<int32_t>& seq_lens,
                     const std::vector<int32_t>& block_tables);
  void run_layer(int32_t layer, const StepTensors& tensors);
  // Every op of a step after its inputs are uploaded, up to the logits of the rows that want them.
  void compute(const StepTensors& tensors);
  // Runs one step up to the logits of the rows that want them, left on the backend (rows 0: none want logits).
  absl::StatusOr<Tensor> run_step(const ForwardBatch& batch);
  // Runs the step on `t` once and records it as shape's graph; a failed capture turns graphs off (logged).
  void record_graph(const StepTensors& t, DecodeGraphShape shape);
  // A decode step padded to a graph's shape: replays the graph, or runs and records it on first sight.
  absl::StatusOr<Tensor> run_graphed_step(const StepInputs& step, const std::vector<int32_t>& token_ids,
                                          DecodeGraphShape shape);

  DecoderSpec spec_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<DecoderWeights> weights_;
  DType kv_cache_dtype_;
  CausalLMInfo info_;
  std::unique_ptr<Buffer> rope_table_;
  Tensor inv_freq_;
  ProjectionLayouts layouts_;
  int32_t num_kv_blocks_ = 0;
  std::vector<std::unique_ptr<Buffer>> kv_buffers_;
  std::vector<KvCacheLayer> kv_cache_;
  // Scratch, in the order StepTensors lists them.
  std::vector<ScratchTensor> scratch_;
  // Decode graphs (null: off) and their own scratch, allocated once at the largest shape so that the buffers a
  // graph was recorded on never move.
  std::unique_ptr<DecodeGraphs> graphs_;
  std::vector<ScratchTensor> graph_scratch_;
  Tensor last_logits_;                 // the last forward_candidates step's logits, still on the backend
  std::vector<int32_t> packed_;        // host staging of the step's index tables (reused)
  // begin_forward's logits, still on the backend (no rows: none wanted), until the finish call.
  std::optional<Tensor> begun_logits_;
  std::vector<uint32_t> candidate_inputs_;   // host staging of a candidate step's packed inputs (reused)
  std::vector<uint32_t> candidate_outputs_;  // host side of a candidate step's one read-back (reused)
  // Qwen2.5-VL.
  std::optional<VisionConfig> vision_config_;
  std::unique_ptr<VisionEncoder> vision_;
  std::string vision_refusal_;    // why media cannot be taken, while vision_ is null
  ScratchTensor rotary_scratch_;  // an M-RoPE step's cos and sin tables
  Communicator* comm_ = nullptr;  // tensor parallelism: the group's collectives
};

}  // namespace bm::engine
