#include "engine/models/step_inputs.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace bm::engine {
namespace {

absl::Status check_sequence(const SequenceChunk& chunk, size_t index, const StepLimits& limits) {
  if (chunk.num_new_tokens < 1 || chunk.num_cached_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("sequence ", index, " has ", chunk.num_new_tokens, " new and ",
                                                   chunk.num_cached_tokens,
                                                   " cached tokens; it needs at least one new token"));
  }
  const int64_t length = int64_t{chunk.num_cached_tokens} + chunk.num_new_tokens;
  if (length > limits.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat("sequence ", index, " reaches ", length,
                                                   " tokens, beyond the model's max_position_embeddings ",
                                                   limits.max_position_embeddings));
  }
  const int64_t blocks_needed = (length + kBlockSize - 1) / kBlockSize;
  if (static_cast<int64_t>(chunk.block_table.size()) < blocks_needed) {
    return absl::InvalidArgumentError(absl::StrCat("sequence ", index, " needs ", blocks_needed, " KV blocks for ",
                                                   length, " tokens but its block table has ",
                                                   chunk.block_table.size()));
  }
  for (int64_t b = 0; b < blocks_needed; ++b) {
    const int32_t block = chunk.block_table[static_cast<size_t>(b)];
    if (block < 0 || block >= limits.num_kv_blocks) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", index, " uses KV block ", block,
                                                     " outside the cache's ", limits.num_kv_blocks, " blocks"));
    }
  }
  return absl::OkStatus();
}

// A media chunk's embeddings must be there, of the right size, for every pad token the chunk computes.
absl::Status check_media(const SequenceChunk& chunk, size_t index, const StepLimits& limits) {
  const SequenceMedia& media = *chunk.media;
  for (size_t i = 0; i < media.items.size(); ++i) {
    const SequenceMedia::Item& item = media.items[i];
    if (item.start >= chunk.num_cached_tokens + chunk.num_new_tokens ||
        item.start + item.count <= chunk.num_cached_tokens)
      continue;
    if (item.embeddings == nullptr)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", index, ": media item ", i, " is not encoded"));
    if (static_cast<int64_t>(item.embeddings->size()) != int64_t{item.count} * limits.hidden_size)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", index, ": media item ", i, " has ",
                                                     item.embeddings->size(), " embedding values for ", item.count,
                                                     " tokens of ", limits.hidden_size));
  }
  if (media.positions[0].size() != static_cast<size_t>(media.num_prompt_tokens))
    return absl::InvalidArgumentError(absl::StrCat("sequence ", index, ": its M-RoPE rows do not cover the prompt"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<StepInputs> make_step_inputs(const ForwardBatch& batch, const StepLimits& limits) {
  if (batch.sequences.empty()) return absl::InvalidArgumentError("the batch has no sequences");
  StepInputs step;
  step.num_seqs = static_cast<int32_t>(batch.sequences.size());
  int64_t num_tokens = 0;
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const SequenceChunk& chunk = batch.sequences[s];
    if (absl::Status status = check_sequence(chunk, s, limits); !status.ok()) return status;
    if (chunk.media != nullptr)
      if (absl::Status status = check_media(chunk, s, limits); !status.ok()) return status;
    num_tokens += chunk.num_new_tokens;
    const int32_t length = chunk.num_cached_tokens + chunk.num_new_tokens;
    step.max_blocks_per_seq = std::max(step.max_blocks_per_seq, (length + kBlockSize - 1) / kBlockSize);
    step.max_query_len = std::max(step.max_query_len, chunk.num_new_tokens);
    step.max_seq_len = std::max(step.max_seq_len, length);
  }
  if (num_tokens != static_cast<int64_t>(batch.token_ids.size())) {
    return absl::InvalidArgumentError(absl::StrCat("the batch has ", batch.token_ids.size(),
                                                   " token ids but its sequences add up to ", num_tokens,
                                                   " new tokens"));
  }
  for (size_t t = 0; t < batch.token_ids.size(); ++t) {
    if (batch.token_ids[t] < 0 || batch.token_ids[t] >= limits.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", batch.token_ids[t], " at batch position ", t,
                                                     " is outside the vocabulary of ", limits.vocab_size));
    }
  }
  step.num_tokens = static_cast<int32_t>(num_tokens);
  step.block_tables.assign(static_cast<size_t>(step.num_seqs) * step.max_blocks_per_seq, 0);
  step.query_starts.push_back(0);
  bool any_media = false, mrope = false;
  for (const SequenceChunk& chunk : batch.sequences) any_media |= chunk.media != nullptr;
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const SequenceChunk& chunk = batch.sequences[s];
    const int32_t length = chunk.num_cached_tokens + chunk.num_new_tokens;
    const int32_t num_blocks = (length + kBlockSize - 1) / kBlockSize;
    std::copy_n(chunk.block_table.begin(), num_blocks, step.block_tables.begin() + s * step.max_blocks_per_seq);
    for (int32_t position = chunk.num_cached_tokens; position < length; ++position) {
      step.slot_mapping.push_back(chunk.block_table[static_cast<size_t>(position / kBlockSize)] * kBlockSize +
                                  position % kBlockSize);
      if (!any_media) {
        step.positions.push_back(position);
        continue;
      }
      // M-RoPE: the prompt's rows, then index + delta; without media, three equal rows of the index.
      const SequenceMedia* media = chunk.media;
      int64_t rows[3] = {position, position, position};
      if (media != nullptr && position < media->num_prompt_tokens) {
        for (int r = 0; r < 3; ++r) rows[r] = media->positions[r][static_cast<size_t>(position)];
      } else if (media != nullptr) {
        for (int64_t& row : rows) row = int64_t{position} + media->delta;
      }
      mrope |= rows[1] != rows[0] || rows[2] != rows[0];
      step.positions.push_back(static_cast<int32_t>(rows[0]));
      for (int r = 0; r < 3; ++r) step.mrope_rows[r].push_back(rows[r]);
    }
    if (chunk.media != nullptr) {
      const int32_t first_row = step.query_starts.back();
      for (const SequenceMedia::Item& item : chunk.media->items) {
        const int32_t from = std::max(item.start, chunk.num_cached_tokens);
        const int32_t to = std::min(item.start + item.count, length);
        if (from >= to) continue;
        step.splices.push_back(
            EmbeddingSplice{first_row + (from - chunk.num_cached_tokens), to - from,
                            item.embeddings->data() + int64_t{from - item.start} * limits.hidden_size});
      }
    }
    step.seq_lens.push_back(length);
    step.query_starts.push_back(step.query_starts.back() + chunk.num_new_tokens);
    if (chunk.wants_logits) step.logits_rows.push_back(step.query_starts.back() - 1);
  }
  if (!mrope)
    for (std::vector<int64_t>& row : step.mrope_rows) row.clear();
  return step;
}

}  // namespace bm::engine
