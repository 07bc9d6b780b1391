#pragma once
// Where the inputs and outputs of a candidate step (DecoderLM::forward_candidates) sit in two buffers of 4-byte
// words, so that a step uploads its candidate inputs in one host→device copy and reads every result back in one
// device→host copy. Each copy costs a GPU step fixed host time (a launch, and for the read-back a stream
// synchronisation), so one copy per direction instead of two to five. Every field is an int32, float or uint32:
// the words hold their bits unchanged (a -inf or NaN logit comes back as it left).
//
// Inputs, in order: listed_starts (rows + 1), listed_ids (num_listed), inverse_temperatures (rows when some row
// samples top-p, else 0), mask_rows (rows when some row is constrained, else 0), masks (num_masks × words).
// Outputs, in order: candidate ids (rows × k), candidate logits (rows × k), log_sum_exp (rows when asked, else 0),
// tempered_lse (rows when inverse temperatures came, else 0), listed_logits (num_listed).
#include <cstdint>
#include <span>
#include <vector>

#include "engine/models/causal_lm.h"

namespace bm::engine {

struct CandidatePacking {
  struct Region {
    int64_t offset = 0;  // in words
    int64_t size = 0;    // in words
  };
  int64_t rows = 0;
  int32_t k = 0;
  Region listed_starts, listed_ids, inverse_temperatures, mask_rows, masks;
  int64_t input_words = 0;
  Region ids, logits, log_sum_exp, tempered_lse, listed_logits;
  int64_t output_words = 0;

  // The layout of a request over `rows` rows, already validated (DecoderLM::forward_candidates checks the
  // sizes). mask_words: words of one mask over the vocabulary.
  static CandidatePacking of(const CandidateRequest& request, int64_t rows, int64_t mask_words);

  // The request's inputs laid out as above (words resized to input_words).
  void pack_inputs(const CandidateRequest& request, std::vector<uint32_t>& words) const;
  // Candidates from the read-back words (output_words of them).
  void unpack_outputs(std::span<const uint32_t> words, Candidates& out) const;
};

}  // namespace bm::engine
