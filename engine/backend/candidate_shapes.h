#pragma once
// The shape and dtype preconditions of Backend::top_candidates (backend.h), checked the same way by every backend.
#include <cstdint>

#include "common/check.h"
#include "engine/backend/backend.h"

namespace bm::engine {

// What a call asks for beyond the candidates.
struct CandidateShapes {
  int64_t rows = 0;
  int64_t vocab = 0;
  int64_t num_listed = 0;   // with 0, listed_ids and listed_logits may be empty views (no buffer), any dtype
  bool wants_lse = false;   // log_sum_exp is not empty
  bool wants_mass = false;  // inverse_temperatures and tempered_lse are not empty
  int64_t num_masks = 0;    // rows of masks; 0: mask_rows and masks are empty (no row constrained)
  int64_t mask_words = 0;   // words per mask: ceil(vocab / 32)
};

// Aborts (BM_CHECK) on a caller bug; index values are the backend's to check where it reads them.
inline CandidateShapes check_candidate_shapes(const Tensor& logits, const Tensor& listed_starts,
                                              const Tensor& listed_ids, int32_t k, const Tensor& listed_logits,
                                              const Tensor& cand_ids, const Tensor& cand_logits,
                                              const Tensor& log_sum_exp, const Tensor& inverse_temperatures,
                                              const Tensor& tempered_lse, const Tensor& mask_rows,
                                              const Tensor& masks) {
  CandidateShapes s;
  s.rows = logits.rows;
  s.vocab = logits.cols;
  BM_CHECK(k >= 1 && k <= Backend::kMaxCandidates);
  BM_CHECK(logits.dtype == DType::kF32 && s.vocab > 0 && s.rows <= int64_t{0x7fffffff} &&
           s.vocab <= int64_t{0x7fffffff});
  BM_CHECK(listed_starts.dtype == DType::kI32 && listed_starts.rows == 1 && listed_starts.cols == s.rows + 1);
  BM_CHECK(cand_ids.dtype == DType::kI32 && cand_ids.rows == s.rows && cand_ids.cols == k);
  BM_CHECK(cand_logits.dtype == DType::kF32 && cand_logits.rows == s.rows && cand_logits.cols == k);
  s.wants_lse = log_sum_exp.num_elements() > 0;
  BM_CHECK(!s.wants_lse || (log_sum_exp.dtype == DType::kF32 && log_sum_exp.num_elements() == s.rows));
  s.wants_mass = tempered_lse.num_elements() > 0;
  BM_CHECK(inverse_temperatures.num_elements() == tempered_lse.num_elements());
  BM_CHECK(!s.wants_mass || (tempered_lse.num_elements() == s.rows && tempered_lse.dtype == DType::kF32 &&
                             inverse_temperatures.dtype == DType::kF32));
  s.num_listed = listed_ids.num_elements();
  BM_CHECK(listed_logits.num_elements() == s.num_listed);
  BM_CHECK(s.num_listed == 0 || (listed_ids.dtype == DType::kI32 && listed_logits.dtype == DType::kF32 &&
                                 listed_ids.rows == 1 && listed_logits.rows == 1));
  s.mask_words = (s.vocab + 31) / 32;
  s.num_masks = masks.num_elements() > 0 ? masks.rows : 0;
  BM_CHECK((mask_rows.num_elements() > 0) == (s.num_masks > 0));
  BM_CHECK(s.num_masks == 0 || (mask_rows.dtype == DType::kI32 && mask_rows.rows == 1 && mask_rows.cols == s.rows &&
                                masks.dtype == DType::kU32 && masks.cols == s.mask_words));
  return s;
}

}  // namespace bm::engine
