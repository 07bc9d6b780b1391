#pragma once
// A request (one prompt, its sampling params, where outputs go) and its sequences (n samples). A sequence is
// what the scheduler moves between waiting and running and what owns KV blocks.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/grammar/grammar_matcher.h"
#include "engine/models/causal_lm.h"
#include "engine/models/prompt_media.h"
#include "engine/runtime/sampling_params.h"

namespace bm::engine {

enum class FinishReason { kStop, kLength, kAbort, kError };

struct TokenLogprob {
  int32_t token_id = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // best first
};

// What one sequence produced since its last output. Delivered on the engine thread.
struct SequenceOutput {
  int32_t index = 0;                   // which of the request's n samples
  std::vector<int32_t> new_token_ids;  // in order; a stop token that ended the sequence is included
  std::vector<TokenLogprob> logprobs;  // one per new token when asked for
  std::optional<FinishReason> finish;  // set on the sequence's last output
  std::string error;                   // with FinishReason::kError
  int32_t num_prompt_tokens = 0;
  int32_t num_cached_prompt_tokens = 0;  // prompt tokens whose KV came from the prefix cache
};
using OutputCallback = std::function<void(SequenceOutput)>;

enum class SequenceStatus { kWaiting, kRunning, kFinished };

struct Request {
  int64_t id = 0;
  SamplingParams params;
  OutputCallback on_output;
  std::atomic<bool> abort_requested{false};
  int32_t num_unfinished = 0;  // sequences still going; touched on the engine thread only
  // A multimodal prompt: its images and videos as submitted (dropped once encoded) and as the forward sees them
  // (embeddings filled on the engine thread before the first prefill). Null for text.
  std::shared_ptr<const PromptMedia> media_input;
  std::shared_ptr<SequenceMedia> media;
};

class Sequence {
 public:
  Sequence(int64_t id, int32_t index, std::shared_ptr<Request> request, std::vector<int32_t> prompt_ids, uint64_t seed);

  int64_t id() const { return id_; }
  int32_t index() const { return index_; }
  Request& request() const { return *request_; }
  std::shared_ptr<Request> shared_request() const { return request_; }
  const SamplingParams& params() const { return request_->params; }

  const std::vector<int32_t>& token_ids() const { return token_ids_; }
  int32_t num_tokens() const { return static_cast<int32_t>(token_ids_.size()); }
  int32_t num_prompt_tokens() const { return num_prompt_tokens_; }
  int32_t num_output_tokens() const { return num_tokens() - num_prompt_tokens_; }
  int32_t last_token() const { return token_ids_.back(); }
  // How often each token occurs in the output, for presence and frequency penalties.
  const std::unordered_map<int32_t, int32_t>& output_counts() const { return output_counts_; }
  // Every token of the prompt and the output once, ascending (what a repetition penalty touches), kept up to date
  // as tokens are appended so that no step has to rebuild it.
  const std::vector<int32_t>& distinct_tokens() const { return distinct_tokens_; }
  void append_token(int32_t token_id);
  // The hash of the media whose tokens KV block `block` holds; 0 for text (BlockManager::chain_hash).
  uint64_t block_media_hash(int32_t block) const {
    return request_->media != nullptr ? request_->media->hash_of_range(block * kBlockSize, kBlockSize) : 0;
  }

  // Tokens whose K/V are in the cache. The tokens after them are what the next steps compute.
  int32_t num_computed_tokens = 0;
  int32_t num_cached_prompt_tokens = 0;
  int32_t num_uncomputed_tokens() const { return num_tokens() - num_computed_tokens; }
  bool in_prefill() const { return num_computed_tokens < num_prompt_tokens_; }

  std::vector<int32_t> block_table;
  // Chained hashes of the full blocks the prefix cache knows for this sequence, block_table order.
  std::vector<uint64_t> block_hashes;

  SequenceStatus status = SequenceStatus::kWaiting;
  std::mt19937_64 rng;
  // The sibling (n > 1) whose prefill this sequence waits for, so that the prompt's blocks are shared; -1: none.
  int64_t prefill_leader_id = -1;
  int32_t num_preemptions = 0;
  // Tokens produced but not yet delivered to the request's callback.
  SequenceOutput pending;
  // Where the output stands in the request's grammar (structured output); null when unconstrained.
  std::unique_ptr<grammar::GrammarMatcher> matcher;

 private:
  int64_t id_;
  int32_t index_;
  std::shared_ptr<Request> request_;
  std::vector<int32_t> token_ids_;
  int32_t num_prompt_tokens_;
  std::unordered_map<int32_t, int32_t> output_counts_;
  std::vector<int32_t> distinct_tokens_;
};

}  // namespace bm::engine
