#pragma once
// The per-step index tables a forward pass uploads (positions, KV slots, block tables, logits rows), built on the
// host from a ForwardBatch after checking it against the model and the KV cache. A batch that does not fit
// (token id out of the vocabulary, a block id outside the cache, a block table too short, counts that do not
// add up) is an InvalidArgument error that names the sequence and the value.
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/models/causal_lm.h"

namespace bm::engine {

struct StepLimits {
  int32_t vocab_size = 0;
  int32_t num_kv_blocks = 0;
  int32_t max_position_embeddings = 0;
  int32_t hidden_size = 0;  // rows of media embeddings
};

// Rows of a step's input embeddings that come from an image or video instead of the embedding table.
struct EmbeddingSplice {
  int32_t row = 0;              // first token row of the step
  int32_t count = 0;            // rows
  const float* data = nullptr;  // [count, hidden] on the host, alive for the step (SequenceMedia owns it)
};

struct StepInputs {
  int32_t num_tokens = 0;
  int32_t num_seqs = 0;
  std::vector<int32_t> positions;     // per token
  std::vector<int32_t> slot_mapping;  // per token: block * kBlockSize + offset
  std::vector<int32_t> query_starts;  // num_seqs + 1
  std::vector<int32_t> seq_lens;      // per sequence: cached + new
  int32_t max_blocks_per_seq = 0;
  std::vector<int32_t> block_tables;  // num_seqs × max_blocks_per_seq, padded with block 0
  std::vector<int32_t> logits_rows;   // token rows whose logits are wanted, in batch order
  int32_t max_query_len = 0;
  int32_t max_seq_len = 0;
  // Multimodal prompts (SequenceChunk::media): the media rows of the embeddings, and — when some token's three
  // M-RoPE positions differ (an image's or a video's tokens) — the three position rows of every token, for a
  // rotary table; empty otherwise, and `positions` (the temporal row, + delta after the prompt) serve the 1-D RoPE.
  std::vector<EmbeddingSplice> splices;
  std::vector<int64_t> mrope_rows[3];
};

absl::StatusOr<StepInputs> make_step_inputs(const ForwardBatch& batch, const StepLimits& limits);

}  // namespace bm::engine
