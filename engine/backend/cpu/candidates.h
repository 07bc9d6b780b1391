#pragma once
// Candidate selection for sampling (Backend::top_candidates) on the host, and the ranking it is built on, which
// the host sampler shares so that both pick the same tokens in the same order.
#include <cstdint>
#include <span>
#include <vector>

#include "engine/backend/cpu/thread_pool.h"

namespace bm::engine::cpu {

// The ids of the k largest values, best first, ties to the lower id, in one pass (a heap of the k best so far
// whose worst entry turns away almost every other value with one comparison). `skip` (sorted ascending) lists
// ids that take no part; so do the ids whose bit is clear in `allowed` (Backend::top_candidates' mask words; empty:
// every id takes part).
std::vector<int32_t> best_ids(std::span<const float> values, size_t k, std::span<const int32_t> skip = {},
                              std::span<const uint32_t> allowed = {});

// Bit id % 32 of word id / 32: the layout of Backend::top_candidates' masks (and of XGrammar's and vLLM's).
inline bool mask_allows(std::span<const uint32_t> words, int64_t id) {
  return (words[static_cast<size_t>(id) / 32] >> (id % 32)) & 1u;
}

// Backend::top_candidates over host rows; see backend.h for the contract. log_sum_exp may be null (not wanted);
// so may inverse_temperatures and tempered_lse (both or neither), and mask_rows (no row constrained; masks is then
// not read). masks holds ceil(vocab / 32) words per mask.
void top_candidates(ThreadPool& pool, const float* logits, int64_t rows, int64_t vocab, const int32_t* listed_starts,
                    const int32_t* listed_ids, int32_t k, float* listed_logits, int32_t* cand_ids, float* cand_logits,
                    float* log_sum_exp, const float* inverse_temperatures = nullptr, float* tempered_lse = nullptr,
                    const int32_t* mask_rows = nullptr, const uint32_t* masks = nullptr);

}  // namespace bm::engine::cpu
