#include "engine/models/candidate_packing.h"

#include <cstring>
#include <initializer_list>
#include <utility>

#include "common/check.h"

namespace bm::engine {
namespace {

// Regions follow one another in the order given; returns the words they take.
int64_t lay_out(std::initializer_list<std::pair<CandidatePacking::Region*, int64_t>> regions) {
  int64_t offset = 0;
  for (const auto& [region, size] : regions) {
    BM_CHECK(size >= 0);
    *region = CandidatePacking::Region{offset, size};
    offset += size;
  }
  return offset;
}

template <typename T>
void put(std::vector<uint32_t>& words, CandidatePacking::Region region, const std::vector<T>& values) {
  static_assert(sizeof(T) == sizeof(uint32_t));
  BM_CHECK(static_cast<int64_t>(values.size()) == region.size);
  if (region.size > 0) std::memcpy(words.data() + region.offset, values.data(), values.size() * sizeof(uint32_t));
}

template <typename T>
void get(std::span<const uint32_t> words, CandidatePacking::Region region, std::vector<T>& values) {
  static_assert(sizeof(T) == sizeof(uint32_t));
  values.resize(static_cast<size_t>(region.size));
  if (region.size > 0) std::memcpy(values.data(), words.data() + region.offset, values.size() * sizeof(uint32_t));
}

}  // namespace

CandidatePacking CandidatePacking::of(const CandidateRequest& request, int64_t rows, int64_t mask_words) {
  BM_CHECK(rows >= 0 && request.k >= 1 && mask_words >= 1);
  CandidatePacking p;
  p.rows = rows;
  p.k = request.k;
  const int64_t num_listed = static_cast<int64_t>(request.listed_ids.size());
  const int64_t mass_rows = request.inverse_temperatures.empty() ? 0 : rows;
  const bool masked = !request.mask_rows.empty();
  const int64_t num_masks = static_cast<int64_t>(request.masks.size()) / mask_words;
  p.input_words = lay_out({{&p.listed_starts, rows + 1},
                           {&p.listed_ids, num_listed},
                           {&p.inverse_temperatures, mass_rows},
                           {&p.mask_rows, masked ? rows : 0},
                           {&p.masks, masked ? num_masks * mask_words : 0}});
  p.output_words = lay_out({{&p.ids, rows * request.k},
                            {&p.logits, rows * request.k},
                            {&p.log_sum_exp, request.log_sum_exp ? rows : 0},
                            {&p.tempered_lse, mass_rows},
                            {&p.listed_logits, num_listed}});
  return p;
}

void CandidatePacking::pack_inputs(const CandidateRequest& request, std::vector<uint32_t>& words) const {
  words.assign(static_cast<size_t>(input_words), 0);
  put(words, listed_starts, request.listed_starts);
  put(words, listed_ids, request.listed_ids);
  put(words, inverse_temperatures, request.inverse_temperatures);
  if (mask_rows.size > 0) {
    put(words, mask_rows, request.mask_rows);
    put(words, masks, request.masks);
  }
}

void CandidatePacking::unpack_outputs(std::span<const uint32_t> words, Candidates& out) const {
  BM_CHECK(static_cast<int64_t>(words.size()) == output_words);
  out.k = k;
  get(words, ids, out.ids);
  get(words, logits, out.logits);
  get(words, log_sum_exp, out.log_sum_exp);
  get(words, tempered_lse, out.tempered_lse);
  get(words, listed_logits, out.listed_logits);
}

}  // namespace bm::engine
