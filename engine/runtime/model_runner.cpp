#include "engine/runtime/model_runner.h"

namespace bm::engine {

void ModelRunner::build_forward(const ScheduledBatch& batch) {
  forward_.token_ids.clear();
  forward_.sequences.resize(batch.chunks.size());
  for (size_t i = 0; i < batch.chunks.size(); ++i) {
    const ScheduledChunk& c = batch.chunks[i];
    const std::vector<int32_t>& tokens = c.seq->token_ids();
    const int32_t first = c.seq->num_computed_tokens;
    forward_.token_ids.insert(forward_.token_ids.end(), tokens.begin() + first,
                              tokens.begin() + first + c.num_new_tokens);
    SequenceChunk& chunk = forward_.sequences[i];
    chunk.num_cached_tokens = first;
    chunk.num_new_tokens = c.num_new_tokens;
    chunk.block_table = c.seq->block_table;
    chunk.wants_logits = c.wants_logits;
    chunk.media = c.seq->request().media.get();
  }
}

absl::Status ModelRunner::begin(const ScheduledBatch& batch) {
  build_forward(batch);
  return model_.begin_forward(forward_);
}

absl::Status ModelRunner::finish(std::vector<float>& logits) {
  return model_.finish_logits(logits);
}

absl::Status ModelRunner::finish(const CandidateRequest& request, Candidates& candidates) {
  return model_.finish_candidates(request, candidates);
}

}  // namespace bm::engine
