#pragma once
// Turns one row of logits into the next token of a sequence, in vLLM's order: logit bias → repetition,
// frequency and presence penalties → min_tokens masking of stop tokens → temperature (0: greedy) → top-k →
// top-p → min-p → a draw from the sequence's own RNG. Logprobs describe the model's raw distribution
// (log-softmax of the unprocessed logits), as vLLM reports them by default; under a grammar, of the constrained
// logits (vLLM masks the logits before its sampler sees them).
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "engine/models/causal_lm.h"
#include "engine/runtime/sequence.h"

namespace bm::engine {

// One row's sampling candidates (CausalLM::forward_candidates): the k best raw logits among the tokens the
// sampler does not adjust, and the raw logits of those it does (listed_ids).
struct RowCandidates {
  std::span<const int32_t> ids;  // best first; -1 pads
  std::span<const float> logits;
  std::span<const int32_t> listed_ids;
  std::span<const float> listed_logits;
  float log_sum_exp = 0;  // when the request asked for it (CandidateRequest::log_sum_exp)
  // log Σ exp(logit / temperature) over the unlisted ids, when the request asked for it (top-p rows).
  std::optional<float> tempered_lse;
};

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
  // The same token from candidates as from the whole row, when candidates_needed(seq) > 0 and the row was
  // ranked with at least that many candidates, listed_ids(seq) listed, the tempered mass given where
  // needs_tempered_mass(seq), and, under a grammar, the row masked with fill_mask(seq) (CandidateRequest).
  // Log-probabilities agree up to the device's float log-sum-exp. Nothing when the candidates cannot settle the
  // draw (a top-p nucleus that reaches past them, or a grammar that allows nothing): then nothing was drawn and the
  // whole row must be sampled.
  std::optional<SampledToken> sample(const RowCandidates& row, Sequence& seq) const;
  // How many candidates a sequence's next token needs (0: the whole row is needed: plain sampling without top-k or
  // top-p, or more alternatives than Backend::kMaxCandidates). Top-p without top-k asks for the most candidates
  // and the tempered mass of the rest; the nucleus of a confident model lies inside them.
  int32_t candidates_needed(const Sequence& seq) const;
  // Top-p without top-k: the draw needs the tempered mass beyond the candidates (CandidateRequest).
  bool needs_tempered_mass(const Sequence& seq) const;
  // The tokens this sequence's next draw adjusts (bias, penalties, masking), sorted and distinct; appended to out.
  void listed_ids(const Sequence& seq, std::vector<int32_t>& out) const;
  // Under a grammar (seq.matcher): the allowed-token bitmask of the next token, mask_words(vocab_size()) words,
  // exactly the tokens the whole-row sample() leaves unmasked (the grammar's, plus end-of-sequence and stop tokens
  // where the text is complete), for the backend to apply before candidate selection.
  void fill_mask(const Sequence& seq, std::span<uint32_t> words) const;
  bool is_eos(int32_t token_id) const;
  int32_t vocab_size() const { return vocab_size_; }

 private:
  template <typename At>
  void adjust(const Sequence& seq, At&& at) const;
  int32_t draw(std::vector<float>& logits, Sequence& seq) const;
  // Masks what the sequence's grammar does not allow next (end-of-sequence only where the text is complete).
  void constrain(const Sequence& seq, std::vector<float>& row) const;
  // Top-k (then top-p and min-p) over candidates already ranked best first with their adjusted logits.
  int32_t draw_ranked(const std::vector<int32_t>& order, const std::vector<float>& values, Sequence& seq) const;
  bool masks_stop_tokens(const Sequence& seq) const;
  // Whether top-k removes any token (top_k < 1 or >= the vocabulary keeps them all).
  bool cuts_top_k(const SamplingParams& p) const;
  int32_t draw_from_all(const std::vector<float>& logits, Sequence& seq) const;
  int32_t draw_top_p(const std::vector<float>& logits, Sequence& seq) const;
  // Top-p over candidates and listed tokens (ids, adjusted logits) with the mass of the other tokens; nothing
  // when the nucleus may reach past the candidates.
  std::optional<int32_t> draw_top_p(const std::vector<int32_t>& ids, const std::vector<float>& adjusted,
                                    size_t num_candidates, bool all_unlisted_present, float tempered_lse,
                                    Sequence& seq) const;
  TokenLogprob raw_logprob(std::span<const float> logits, int32_t token_id, int32_t num_top) const;

  int32_t vocab_size_;
  std::vector<int32_t> eos_token_ids_;
};

}  // namespace bm::engine
