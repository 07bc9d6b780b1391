#pragma once
// Which runs a benchmark makes: the (P, C) pairs and, for each, the concurrency levels (DESIGN §7).
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace bm::daemon::bench {

inline constexpr int32_t kMaxConcurrentRequests = 256;  // the original's MAX_CONCURRENT_REQUESTS

struct TokenPair {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
};

// The Cartesian product, in the order given; rejects an empty list, a value below 1, and (when
// max_model_len > 0) a pair longer than the model's context, each with one sentence.
absl::StatusOr<std::vector<TokenPair>> make_token_pairs(const std::vector<int32_t>& prompt_tokens,
                                                        const std::vector<int32_t>& completion_tokens,
                                                        int32_t max_model_len);

// min(kv_capacity_tokens ÷ (P + C), max_num_seqs, 256); 0 when not even one request fits.
int32_t max_concurrency(int64_t kv_capacity_tokens, const TokenPair& pair, int32_t max_num_seqs);

// 1, 2, 4, … below max, then max itself: 9 → {1, 2, 4, 8, 9}; 8 → {1, 2, 4, 8}; 0 → {}.
std::vector<int32_t> concurrency_levels(int32_t max);

}  // namespace bm::daemon::bench
