#pragma once
// What a request asks of the sampler and the stop logic. Validated once at submit; the step loop trusts it.
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/grammar/compiled_grammar.h"

namespace bm::engine {

struct SamplingParams {
  int32_t n = 1;  // parallel samples; they share the prompt's KV blocks
  int32_t max_tokens = 16;
  int32_t min_tokens = 0;    // eos and stop token ids are masked until this many tokens exist
  float temperature = 1.0f;  // 0: greedy
  float top_p = 1.0f;
  int32_t top_k = -1;  // -1 or 0: off
  float min_p = 0.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  float repetition_penalty = 1.0f;
  std::vector<std::pair<int32_t, float>> logit_bias;
  // Per-request RNG seed: the same seed gives the same tokens whatever else shares the batch. Unset: the
  // engine draws one from its own seeded generator.
  std::optional<uint64_t> seed;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  int32_t logprobs = -1;  // -1: none; k >= 0: the sampled token's logprob and the k most likely alternatives
  // Structured output: every sample's text follows this grammar (docs/structured-output.md); end-of-sequence is
  // allowed exactly where the grammar accepts. Its vocabulary must be the model's.
  std::shared_ptr<const grammar::CompiledGrammar> grammar;
};

// Fails with a sentence naming the field and the allowed range.
absl::Status validate_sampling_params(const SamplingParams& params, int32_t vocab_size);

}  // namespace bm::engine
