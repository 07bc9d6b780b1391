#include "engine/runtime/batch_sampler.h"

#include <algorithm>
#include <optional>
#include <thread>

#include "common/check.h"

namespace bm::engine {
namespace {

int32_t default_threads() {
  const int32_t cores = static_cast<int32_t>(std::thread::hardware_concurrency());
  return std::clamp(cores, 1, 16);
}

}  // namespace

BatchSampler::BatchSampler(const Sampler& sampler, int32_t num_threads)
    : sampler_(sampler), pool_(std::make_unique<cpu::ThreadPool>(num_threads > 0 ? num_threads : default_threads())) {}

void BatchSampler::sample(std::span<const float> logits, std::span<Sequence* const> seqs,
                          std::vector<SampledToken>& out) {
  const size_t vocab = static_cast<size_t>(sampler_.vocab_size());
  BM_CHECK(logits.size() == seqs.size() * vocab);
  out.assign(seqs.size(), SampledToken{});
  // One row per chunk: rows cost very different amounts (greedy vs. a full-vocabulary draw with logprobs).
  pool_->parallel_for(static_cast<int64_t>(seqs.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = sampler_.sample(logits.subspan(static_cast<size_t>(i) * vocab, vocab), *seqs[i]);
  });
}

bool BatchSampler::plan_candidates(std::span<Sequence* const> seqs, CandidateRequest& request, bool top_p,
                                   bool grammar) const {
  request.k = 1;
  request.log_sum_exp = false;
  bool tempered = false;
  int32_t num_masks = 0;
  for (Sequence* seq : seqs) {
    const int32_t k = sampler_.candidates_needed(*seq);
    if (k == 0 || (!top_p && sampler_.needs_tempered_mass(*seq)) || (!grammar && seq->matcher)) return false;
    num_masks += seq->matcher ? 1 : 0;
    request.k = std::max(request.k, k);
    request.log_sum_exp = request.log_sum_exp || seq->params().logprobs >= 0;
    tempered = tempered || sampler_.needs_tempered_mass(*seq);
  }
  request.inverse_temperatures.clear();
  if (tempered)
    for (Sequence* seq : seqs)
      request.inverse_temperatures.push_back(
          seq->params().temperature > 0 ? static_cast<float>(1.0 / seq->params().temperature) : 1.0f);
  request.listed_starts.assign(1, 0);
  request.listed_ids.clear();
  for (Sequence* seq : seqs) {
    sampler_.listed_ids(*seq, request.listed_ids);
    request.listed_starts.push_back(static_cast<int32_t>(request.listed_ids.size()));
  }
  // One mask per constrained row, none for the others (an unconstrained batch sends no mask at all). Filled in
  // parallel: a grammar state seen for the first time computes its token set here.
  request.mask_rows.clear();
  request.masks.clear();
  if (num_masks == 0) return true;
  const size_t words = static_cast<size_t>(mask_words(sampler_.vocab_size()));
  std::vector<Sequence*> constrained;
  request.mask_rows.reserve(seqs.size());
  for (Sequence* seq : seqs) {
    request.mask_rows.push_back(seq->matcher ? static_cast<int32_t>(constrained.size()) : -1);
    if (seq->matcher) constrained.push_back(seq);
  }
  request.masks.resize(constrained.size() * words);
  pool_->parallel_for(static_cast<int64_t>(constrained.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m)
      sampler_.fill_mask(*constrained[static_cast<size_t>(m)],
                         std::span(request.masks).subspan(static_cast<size_t>(m) * words, words));
  });
  return true;
}

void BatchSampler::sample(const Candidates& candidates, const CandidateRequest& request,
                          std::span<Sequence* const> seqs, std::vector<SampledToken>& out,
                          std::vector<int32_t>& unsettled) {
  const size_t k = static_cast<size_t>(candidates.k);
  BM_CHECK(candidates.ids.size() == seqs.size() * k && request.listed_starts.size() == seqs.size() + 1);
  out.assign(seqs.size(), SampledToken{});
  std::vector<char> settled(seqs.size(), 1);
  pool_->parallel_for(static_cast<int64_t>(seqs.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const size_t first = static_cast<size_t>(request.listed_starts[i]);
      const size_t count = static_cast<size_t>(request.listed_starts[i + 1]) - first;
      RowCandidates row;
      row.ids = std::span<const int32_t>(candidates.ids).subspan(static_cast<size_t>(i) * k, k);
      row.logits = std::span<const float>(candidates.logits).subspan(static_cast<size_t>(i) * k, k);
      row.listed_ids = std::span<const int32_t>(request.listed_ids).subspan(first, count);
      row.listed_logits = std::span<const float>(candidates.listed_logits).subspan(first, count);
      if (request.log_sum_exp) row.log_sum_exp = candidates.log_sum_exp[static_cast<size_t>(i)];
      if (!candidates.tempered_lse.empty()) row.tempered_lse = candidates.tempered_lse[static_cast<size_t>(i)];
      std::optional<SampledToken> token = sampler_.sample(row, *seqs[i]);
      if (token)
        out[i] = std::move(*token);
      else
        settled[i] = 0;
    }
  });
  unsettled.clear();
  for (size_t i = 0; i < seqs.size(); ++i)
    if (!settled[i]) unsettled.push_back(static_cast<int32_t>(i));
}

void BatchSampler::sample_unsettled(std::vector<float>& whole_rows, const Candidates& candidates,
                                    const CandidateRequest& request, std::span<Sequence* const> seqs,
                                    std::span<const int32_t> unsettled, std::vector<SampledToken>& out) {
  const size_t vocab = static_cast<size_t>(sampler_.vocab_size());
  BM_CHECK(whole_rows.size() == unsettled.size() * vocab);
  pool_->parallel_for(static_cast<int64_t>(unsettled.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const int32_t i = unsettled[static_cast<size_t>(j)];
      std::span<float> row = std::span(whole_rows).subspan(static_cast<size_t>(j) * vocab, vocab);
      for (int32_t l = request.listed_starts[i]; l < request.listed_starts[i + 1]; ++l)
        row[static_cast<size_t>(request.listed_ids[l])] = candidates.listed_logits[static_cast<size_t>(l)];
      out[static_cast<size_t>(i)] = sampler_.sample(row, *seqs[static_cast<size_t>(i)]);
    }
  });
}

}  // namespace bm::engine
