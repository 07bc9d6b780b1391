#include "engine/runtime/sampling_params.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"

namespace bm::engine {

absl::Status validate_sampling_params(const SamplingParams& p, int32_t vocab_size) {
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  if (p.n < 1 || p.n > 128) return bad(absl::StrCat("n must be between 1 and 128, got ", p.n));
  if (p.max_tokens < 1) return bad(absl::StrCat("max_tokens must be at least 1, got ", p.max_tokens));
  if (p.min_tokens < 0 || p.min_tokens > p.max_tokens)
    return bad(absl::StrCat("min_tokens must be between 0 and max_tokens (", p.max_tokens, "), got ", p.min_tokens));
  if (!std::isfinite(p.temperature) || p.temperature < 0)
    return bad(absl::StrCat("temperature must be a number >= 0, got ", p.temperature));
  if (!(p.top_p > 0 && p.top_p <= 1)) return bad(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  if (p.top_k < -1) return bad(absl::StrCat("top_k must be -1 (off), 0 (off) or positive, got ", p.top_k));
  if (!(p.min_p >= 0 && p.min_p <= 1)) return bad(absl::StrCat("min_p must be in [0, 1], got ", p.min_p));
  if (!(p.presence_penalty >= -2 && p.presence_penalty <= 2))
    return bad(absl::StrCat("presence_penalty must be in [-2, 2], got ", p.presence_penalty));
  if (!(p.frequency_penalty >= -2 && p.frequency_penalty <= 2))
    return bad(absl::StrCat("frequency_penalty must be in [-2, 2], got ", p.frequency_penalty));
  if (!(p.repetition_penalty > 0 && std::isfinite(p.repetition_penalty)))
    return bad(absl::StrCat("repetition_penalty must be > 0, got ", p.repetition_penalty));
  for (const auto& [id, bias] : p.logit_bias) {
    if (id < 0 || id >= vocab_size)
      return bad(absl::StrCat("logit_bias names token ", id, ", outside the vocabulary [0, ", vocab_size, ")"));
    if (!std::isfinite(bias)) return bad(absl::StrCat("logit_bias for token ", id, " is not a finite number"));
  }
  for (int32_t id : p.stop_token_ids)
    if (id < 0 || id >= vocab_size)
      return bad(absl::StrCat("stop_token_ids holds ", id, ", outside the vocabulary [0, ", vocab_size, ")"));
  if (p.logprobs < -1 || p.logprobs > 20)
    return bad(absl::StrCat("logprobs must be between 0 and 20, got ", p.logprobs));
  if (p.grammar && p.grammar->vocabulary().vocab_size() > vocab_size)
    return bad(absl::StrCat("the grammar was compiled for a vocabulary of ", p.grammar->vocabulary().vocab_size(),
                            " tokens, larger than the model's ", vocab_size));
  return absl::OkStatus();
}

}  // namespace bm::engine
