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
// ids that take no part.
std::vector<int32_t> best_ids(std::span<const float> values, size_t k, std::span<const int32_t> skip = {});

// Backend::top_candidates over host rows; see backend.h for the contract. log_sum_exp may be null (not wanted);
// so may inverse_temperatures and tempered_lse (both or neither).
void top_candidates(ThreadPool& pool, const float* logits, int64_t rows, int64_t vocab, const int32_t* listed_starts,
                    const int32_t* listed_ids, int32_t k, float* listed_logits, int32_t* cand_ids, float* cand_logits,
                    float* log_sum_exp, const float* inverse_temperatures = nullptr, float* tempered_lse = nullptr);

}  // namespace bm::engine::cpu
