#include "daemon/bench/sweep.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace bm::daemon::bench {
namespace {

absl::Status check_list(const std::vector<int32_t>& values, const char* what) {
  if (values.empty()) return absl::InvalidArgumentError(absl::StrCat("the list of ", what, " is empty"));
  for (int32_t v : values)
    if (v < 1) return absl::InvalidArgumentError(absl::StrCat(what, " must be at least 1, not ", v));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<TokenPair>> make_token_pairs(const std::vector<int32_t>& prompt_tokens,
                                                        const std::vector<int32_t>& completion_tokens,
                                                        int32_t max_model_len) {
  if (absl::Status s = check_list(prompt_tokens, "prompt tokens"); !s.ok()) return s;
  if (absl::Status s = check_list(completion_tokens, "completion tokens"); !s.ok()) return s;
  std::vector<TokenPair> pairs;
  for (int32_t p : prompt_tokens) {
    for (int32_t c : completion_tokens) {
      if (max_model_len > 0 && static_cast<int64_t>(p) + c > max_model_len)
        return absl::InvalidArgumentError(
            absl::StrCat("prompt ", p, " + completion ", c, " = ", static_cast<int64_t>(p) + c,
                         " tokens is over the model's context of ", max_model_len, " tokens"));
      pairs.push_back({p, c});
    }
  }
  return pairs;
}

int32_t max_concurrency(int64_t kv_capacity_tokens, const TokenPair& pair, int32_t max_num_seqs) {
  int64_t per_request = static_cast<int64_t>(pair.prompt_tokens) + pair.completion_tokens;
  if (per_request <= 0 || kv_capacity_tokens <= 0) return 0;
  int64_t limit = kMaxConcurrentRequests;
  if (max_num_seqs > 0) limit = std::min<int64_t>(limit, max_num_seqs);
  return static_cast<int32_t>(std::min(kv_capacity_tokens / per_request, limit));
}

std::vector<int32_t> concurrency_levels(int32_t max) {
  std::vector<int32_t> levels;
  for (int32_t n = 1; n > 0 && n < max; n *= 2) levels.push_back(n);
  if (max > 0) levels.push_back(max);
  return levels;
}

}  // namespace bm::daemon::bench
