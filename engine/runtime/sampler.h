#pragma once
// Turns one row of logits into the next token of a sequence, in vLLM's order: logit bias → repetition,
// frequency and presence penalties → min_tokens masking of stop tokens → temperature (0: greedy) → top-k →
// top-p → min-p → a draw from the sequence's own RNG. Logprobs describe the model's raw distribution
// (log-softmax of the unprocessed logits), as vLLM reports them by default.
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "engine/runtime/sequence.h"

namespace bm::engine {

struct SampledToken {
  int32_t token_id = 0;
  std::optional<TokenLogprob> logprob;  // when the request asked for logprobs
};

class Sampler {
 public:
  // eos_token_ids: the model's end-of-sequence tokens (generation_config.json), masked under min_tokens.
  Sampler(int32_t vocab_size, std::vector<int32_t> eos_token_ids);

  // Safe to call for different sequences from several threads at once (the state it changes is the sequence's
  // generator).
  SampledToken sample(std::span<const float> logits, Sequence& seq) const;
  bool is_eos(int32_t token_id) const;
  int32_t vocab_size() const { return vocab_size_; }

 private:
  void apply_penalties(std::vector<float>& logits, const Sequence& seq) const;
  void mask_stop_tokens(std::vector<float>& logits, const Sequence& seq) const;
  int32_t draw(std::vector<float>& logits, Sequence& seq) const;
  int32_t draw_from_all(const std::vector<float>& logits, Sequence& seq) const;
  int32_t draw_top_p(const std::vector<float>& logits, Sequence& seq) const;
  TokenLogprob raw_logprob(std::span<const float> logits, int32_t token_id, int32_t num_top) const;

  int32_t vocab_size_;
  std::vector<int32_t> eos_token_ids_;
};

}  // namespace bm::engine
