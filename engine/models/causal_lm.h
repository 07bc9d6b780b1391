#pragma once
// The boundary between the runtime (scheduler, block manager, model runner) and a model on a backend.
// The runtime decides *what* runs each step; a CausalLM runs it. Nothing here knows about requests,
// sampling or transports.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/models/prompt_media.h"

namespace bm::engine {

// Tokens per paged-KV block (DESIGN §5).
inline constexpr int32_t kBlockSize = 16;

// A multimodal prompt as the forward pass sees it (Qwen2.5-VL), made by CausalLM::prepare_media and shared by the
// request's sequences: the prompt's M-RoPE position rows (mrope_positions) and, per image or video, where its pad
// tokens sit and, once encoded, the embeddings that replace them.
struct SequenceMedia {
  struct Item {
    int32_t start = 0;                                     // prompt index of the item's first pad token
    int32_t count = 0;                                     // its pad tokens: the embeddings' rows
    uint64_t hash = 0;                                     // MediaItem::hash
    std::shared_ptr<const std::vector<float>> embeddings;  // [count, hidden]; null until encoded
  };
  int32_t num_prompt_tokens = 0;
  std::vector<int32_t> positions[3];  // temporal, height, width rows over the prompt
  int32_t delta = 0;                  // tokens after the prompt: position = index + delta on all three rows
  std::vector<Item> items;            // in prompt order

  bool encoded() const {
    for (const Item& item : items)
      if (item.embeddings == nullptr) return false;
    return true;
  }
  // Combined hash of the items whose pad tokens overlap prompt tokens [first, first + count); 0 when none do.
  uint64_t hash_of_range(int32_t first, int32_t count) const;
};

// One sequence's part of a forward step.
struct SequenceChunk {
  int32_t num_cached_tokens = 0;         // tokens whose K/V are already in the cache; new positions start here
  int32_t num_new_tokens = 0;            // tokens of this sequence in this step (a prefill chunk, or 1 to decode)
  std::vector<int32_t> block_table;      // physical block ids covering [0, num_cached_tokens + num_new_tokens)
  bool wants_logits = false;             // produce logits for this sequence's last new token
  const SequenceMedia* media = nullptr;  // its prompt's images and videos, encoded; null for text
};

// One batched forward: every sequence's new tokens, concatenated in `sequences` order.
struct ForwardBatch {
  std::vector<int32_t> token_ids;
  std::vector<SequenceChunk> sequences;
};

// Sampling candidates instead of whole rows of logits (Backend::top_candidates): per row that wants logits, the
// tokens the sampler will adjust are listed and come back with their raw logits; of the rest, only the k best.
struct CandidateRequest {
  int32_t k = 1;                       // 1 ..= Backend::kMaxCandidates
  std::vector<int32_t> listed_starts;  // rows + 1 offsets into listed_ids
  std::vector<int32_t> listed_ids;     // per row: distinct ids of the vocabulary
  bool log_sum_exp = false;            // fill Candidates::log_sum_exp (some row wants log-probabilities)
  // Empty, or one per row: fill Candidates::tempered_lse with these inverse temperatures (some row samples top-p).
  std::vector<float> inverse_temperatures;
  // Structured output. Empty (no row constrained), or one per row: which mask of `masks` constrains the row, -1
  // none. Everything that comes back for a constrained row describes it with the forbidden ids at -inf (see
  // Backend::top_candidates).
  std::vector<int32_t> mask_rows;
  std::vector<uint32_t> masks;  // allowed-token bitmasks, mask_words(vocab) words each: bit id % 32 of word id / 32
};

// Words of one allowed-token bitmask over a vocabulary.
inline int64_t mask_words(int64_t vocab_size) {
  return (vocab_size + 31) / 32;
}

struct Candidates {
  int32_t k = 0;
  std::vector<int32_t> ids;          // rows × k, best first; -1 where fewer than k unlisted ids exist
  std::vector<float> logits;         // rows × k
  std::vector<float> listed_logits;  // aligned with CandidateRequest::listed_ids
  std::vector<float> log_sum_exp;    // rows: log Σ exp(logit) over the whole row; empty unless requested
  // rows: log Σ exp(logit × inverse temperature) over the row's unlisted ids; empty unless requested.
  std::vector<float> tempered_lse;
};

// Decode steps run from recorded step graphs (engine/models/decode_graphs.h).
struct DecodeGraphStats {
  int64_t captured = 0;  // graphs recorded
  int64_t replayed = 0;  // decode steps run by replaying one
  int64_t eager = 0;     // decode steps run uncaptured while graphs are on (the first of each shape)
  std::string disabled;  // why graphs were turned off after a failed capture; empty otherwise
  int64_t captured_at_load = 0;  // of `captured`, those capture_decode_graphs recorded before serving
  double load_capture_ms = 0;    // how long that took
};

// What the runtime needs to know about a loaded model.
struct CausalLMInfo {
  std::string architecture;  // "Qwen2ForCausalLM", "LlamaForCausalLM"
  int32_t vocab_size = 0;    // rows of the logits
  int32_t max_position_embeddings = 0;
  int32_t num_layers = 0;
  int64_t kv_bytes_per_token = 0;  // K and V over all layers, in the cache's dtype
  int64_t weight_bytes = 0;        // as held on the device (quantized layers packed)
  // What one batch-1 decode step reads of weight_bytes: all but an untied input-embedding table (only its looked-up
  // rows are read). The decode bandwidth ceiling is bandwidth / this (decode_read_weight_bytes, decoder_spec.h).
  int64_t decode_read_bytes = 0;
  std::string quantization;  // "gptq-int4", "gptq-int8", "awq-int4"; empty for float weights
  // Tensor parallelism: the ranks the model is split over. kv_bytes_per_token is then one rank's share (what each
  // rank's device holds per token), weight_bytes and decode_read_bytes the sums over the ranks.
  int32_t tensor_parallel_size = 1;
  // The weights each rank holds, rank order (rank 0 also holds the lm_head); empty for one rank (weight_bytes).
  std::vector<int64_t> rank_weight_bytes;
};

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  virtual const CausalLMInfo& info() const = 0;
  // Total and free memory of the device the model runs on, to size the KV cache.
  virtual int64_t device_memory_total_bytes() const = 0;
  virtual int64_t device_memory_free_bytes() const = 0;
  virtual std::string backend_name() const = 0;
  // Sizes the paged KV cache; block ids in later batches are in [0, num_blocks).
  virtual absl::Status allocate_kv_cache(int32_t num_blocks) = 0;
  // Writes the new tokens' K/V into their blocks and fills `logits` with one row of vocab_size floats per
  // sequence that wants logits, in batch order.
  virtual absl::Status forward(const ForwardBatch& batch, std::vector<float>& logits) = 0;
  // The same step, returning sampling candidates instead of the rows. This default runs forward() and selects on
  // the host; a device model selects on the device and copies back only the candidates.
  virtual absl::Status forward_candidates(const ForwardBatch& batch, const CandidateRequest& request, Candidates& out);
  // The same step in two calls, so that the host prepares what the step's sampling needs (the candidate request:
  // listed ids, grammar masks, temperatures) while the device runs the forward: begin_forward issues the forward
  // of `batch` (K/V writes and logits, which stay on the device) and returns as soon as the backend lets it; then
  // exactly one finish call returns the step's results, as forward / forward_candidates of that batch would.
  // `batch` must stay alive and unchanged until then. The default runs the whole step in the finish call (a host
  // model has nothing to overlap); a finish call without a begin_forward before it is a FailedPrecondition.
  virtual absl::Status begin_forward(const ForwardBatch& batch);
  virtual absl::Status finish_logits(std::vector<float>& logits);
  virtual absl::Status finish_candidates(const CandidateRequest& request, Candidates& out);
  // Whole rows of the last forward_candidates step's logits (row indices in its batch order), for the rows whose
  // draw the candidates could not settle (a top-p nucleus reaching past them). The listed positions of a row may
  // hold garbage: the caller puts the listed logits it got back there. A model that overrides forward_candidates
  // overrides this too (the default serves the default forward_candidates' host rows).
  virtual absl::Status last_logits_rows(std::span<const int32_t> rows, std::vector<float>& out);
  // Runs later decode steps of up to max_seqs sequences as recorded step graphs (CUDA graphs on a GPU), with
  // the same results. Call before the dry run and the KV cache: it allocates the graphs' own activations at their
  // largest shape, which the KV planning must count. Unimplemented when the model or its backend cannot.
  virtual absl::Status enable_decode_graphs(int32_t max_seqs);
  // Captures the decode graphs of the common shapes (every padded batch size, shortest context bound first) now,
  // at load, rather than on each shape's first step mid-traffic; stops starting new captures once `budget` is
  // spent (the shapes left are captured on first use, as before) and logs once how many and how long. Call after
  // allocate_kv_cache (graphs point at the cache). The default (no graphs, or a model that captures lazily only)
  // does nothing; an error is a device fault.
  virtual absl::Status capture_decode_graphs(std::chrono::milliseconds /*budget*/) { return absl::OkStatus(); }
  virtual DecodeGraphStats decode_graph_stats() const { return {}; }
  // What one decoder layer of a decode step of num_seqs sequences (padding rows) records — the nodes of its step
  // graph (StepGraph::num_nodes: kernels and copies on a GPU, ops on the CPU backend) — for the benchmarks that
  // count launches (issue 21: at most 10 kernel nodes per layer). Call after allocate_kv_cache; it runs the step
  // once first (as a capture does). Unimplemented where the model or its backend records no steps.
  virtual absl::StatusOr<int64_t> decode_layer_nodes(int32_t /*num_seqs*/) {
    return absl::UnimplementedError("this model does not record decode steps");
  }

  // Multimodal models. media_support: OK when the model encodes images and videos here, else FailedPrecondition
  // saying why. prepare_media: checks a prompt's pad-token runs against its media (null `media`: none) and computes
  // what the forward needs but the embeddings — null for a prompt without media. encode_media: the items'
  // embeddings, one [num_tokens, hidden] vector per item, from one pass of the vision tower over all of them (small
  // images batched make wider GEMMs), on the model's backend (the engine thread's).
  virtual absl::Status media_support() const;
  virtual absl::StatusOr<std::shared_ptr<SequenceMedia>> prepare_media(std::span<const int32_t> prompt_ids,
                                                                       const PromptMedia* media) const;
  virtual absl::StatusOr<std::vector<std::vector<float>>> encode_media(std::span<const MediaItem* const> items);
  // The device memory an encode may take at most (0: the model encodes nothing), which the KV planning leaves free.
  virtual int64_t media_activation_bytes() const { return 0; }

 private:
  std::vector<float> host_logits_;  // the default forward_candidates' last rows
  // The default begin_forward's batch, until its finish call.
  const ForwardBatch* begun_ = nullptr;
};

// The host reference of Backend::top_candidates over rows of logits already in host memory.
void select_candidates(std::span<const float> logits, int32_t vocab_size, const CandidateRequest& request,
                       Candidates& out);

}  // namespace bm::engine
