#include "engine/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <numeric>
#include <optional>

#include "common/check.h"
#include "engine/backend/backend.h"
#include "engine/backend/cpu/candidates.h"

namespace bm::engine {
namespace {

constexpr float kMasked = -std::numeric_limits<float>::infinity();

int32_t argmax(std::span<const float> x) {
  return static_cast<int32_t>(std::max_element(x.begin(), x.end()) - x.begin());  // ties: the lowest id
}

// A uniform double in [0, 1) from the sequence's generator: 53 random bits, the same on every platform (the
// standard distributions' algorithms are implementation-defined).
double uniform(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

// The logits of a candidate row's listed tokens, by id (listed ids are sorted). Each lookup starts where the
// previous one ended, so an ascending run of ids — the repetition penalty's distinct tokens, all of them listed —
// costs one merge walk rather than a binary search each.
class ListedLogits {
 public:
  ListedLogits(std::span<const int32_t> ids, float* values) : ids_(ids), values_(values) {}
  float& operator()(int32_t id) {
    if (next_ >= ids_.size() || ids_[next_] > id) next_ = 0;
    size_t probe = next_;
    for (int step = 0; step < 8 && probe < ids_.size() && ids_[probe] < id; ++step) ++probe;
    if (probe < ids_.size() && ids_[probe] < id)
      probe = static_cast<size_t>(std::lower_bound(ids_.begin() + probe, ids_.end(), id) - ids_.begin());
    BM_CHECK(probe < ids_.size() && ids_[probe] == id);  // listed_ids(seq) lists every token the draw adjusts
    next_ = probe + 1;
    return values_[probe];
  }

 private:
  std::span<const int32_t> ids_;
  float* values_;
  size_t next_ = 0;
};

struct WeightedId {
  float weight;
  int32_t id;
};

// Rank order of top-p: heavier first, ties to the lower id.
bool better(const WeightedId& a, const WeightedId& b) {
  return a.weight > b.weight || (a.weight == b.weight && a.id < b.id);
}

// The draw both top-p paths end with: the kept tokens in id order (an order that does not depend on how the set
// was found), min-p against the largest weight (1 after subtracting the maximum).
int32_t draw_in_id_order(std::vector<WeightedId>& kept, float min_p, std::mt19937_64& rng) {
  double mass = 0;
  for (WeightedId& e : kept) {
    if (e.weight < min_p) e.weight = 0;
    mass += e.weight;
  }
  double u = uniform(rng) * mass;
  int32_t last = kept.front().id;
  for (const WeightedId& e : kept) {
    if (e.weight == 0) continue;
    last = e.id;
    u -= e.weight;
    if (u < 0) return e.id;
  }
  return last;
}

}  // namespace

// Logit bias → repetition, frequency and presence penalties → min_tokens masking of eos and stop ids, through
// at(id) -> float&: over a whole row, or over a candidate row's listed tokens (the same arithmetic either way).
template <typename At>
void Sampler::adjust(const Sequence& seq, At&& at) const {
  const SamplingParams& p = seq.params();
  for (const auto& [id, bias] : p.logit_bias) at(id) += bias;
  if (p.repetition_penalty != 1.0f) {
    // As transformers and vLLM: every token of the prompt and the output, once.
    for (int32_t id : seq.distinct_tokens()) {
      float& l = at(id);
      l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    }
  }
  if (p.frequency_penalty != 0 || p.presence_penalty != 0)
    for (const auto& [id, count] : seq.output_counts())
      at(id) -= p.frequency_penalty * static_cast<float>(count) + p.presence_penalty;
  if (masks_stop_tokens(seq)) {
    if (!p.ignore_eos)
      for (int32_t id : eos_token_ids_) at(id) = kMasked;
    for (int32_t id : p.stop_token_ids) at(id) = kMasked;
  }
}

Sampler::Sampler(int32_t vocab_size, std::vector<int32_t> eos_token_ids)
    : vocab_size_(vocab_size), eos_token_ids_(std::move(eos_token_ids)) {}

bool Sampler::is_eos(int32_t token_id) const {
  return std::find(eos_token_ids_.begin(), eos_token_ids_.end(), token_id) != eos_token_ids_.end();
}

SampledToken Sampler::sample(std::span<const float> raw, Sequence& seq) const {
  BM_CHECK(static_cast<int32_t>(raw.size()) == vocab_size_);
  const SamplingParams& p = seq.params();
  // Structured output: the grammar's mask comes first, so every later step (and the logprobs) sees the
  // constrained distribution, as vLLM applies its bitmask to the logits before sampling.
  std::vector<float> constrained;
  std::vector<float> logits;
  if (seq.matcher) {
    constrained.assign(raw.begin(), raw.end());
    constrain(seq, constrained);
    if (p.logprobs < 0 && !masks_stop_tokens(seq)) {
      logits = std::move(constrained);  // nothing below needs the unadjusted row: spare a copy
    } else {
      raw = constrained;
      logits.assign(raw.begin(), raw.end());
    }
  } else {
    logits.assign(raw.begin(), raw.end());
  }
  adjust(seq, [&](int32_t id) -> float& { return logits[id]; });
  // min_tokens may mask the only tokens the grammar leaves (end-of-sequence once the text is complete): the
  // grammar wins. (Only then can nothing be left: bias and penalties are finite.)
  if (seq.matcher && masks_stop_tokens(seq) && !std::isfinite(*std::max_element(logits.begin(), logits.end())))
    logits = constrained;
  SampledToken out;
  out.token_id = p.temperature == 0 ? argmax(logits) : draw(logits, seq);
  if (p.logprobs >= 0) out.logprob = raw_logprob(raw, out.token_id, p.logprobs);
  return out;
}

void Sampler::constrain(const Sequence& seq, std::vector<float>& row) const {
  const grammar::GrammarMatcher& m = *seq.matcher;
  // End-of-sequence and stop tokens are special tokens, outside the grammar's vocabulary: allowed exactly
  // where the text is complete (even under ignore_eos: nothing else may follow a complete text).
  std::vector<std::pair<int32_t, float>> ends;
  if (m.is_accepting()) {
    for (int32_t id : eos_token_ids_) ends.emplace_back(id, row[id]);
    for (int32_t id : seq.params().stop_token_ids) ends.emplace_back(id, row[id]);
  }
  m.allowed_tokens()->apply(row);
  for (const auto& [id, value] : ends) row[id] = value;
}

void Sampler::fill_mask(const Sequence& seq, std::span<uint32_t> words) const {
  BM_CHECK(seq.matcher != nullptr && static_cast<int64_t>(words.size()) == mask_words(vocab_size_));
  const grammar::GrammarMatcher& m = *seq.matcher;
  m.allowed_tokens()->fill_bitmask(words);
  // The same end-of-sequence rule as constrain().
  if (m.is_accepting()) {
    auto allow = [&](int32_t id) { words[static_cast<size_t>(id) / 32] |= uint32_t{1} << (id % 32); };
    for (int32_t id : eos_token_ids_) allow(id);
    for (int32_t id : seq.params().stop_token_ids) allow(id);
  }
}

int32_t Sampler::draw(std::vector<float>& logits, Sequence& seq) const {
  const SamplingParams& p = seq.params();
  const bool top_k = cuts_top_k(p);
  if (!top_k && p.top_p >= 1) return draw_from_all(logits, seq);
  if (!top_k) return draw_top_p(logits, seq);
  // Top-k (then top-p within it): rank the k best, then cut.
  std::vector<int32_t> order = cpu::best_ids(logits, static_cast<size_t>(p.top_k));
  std::vector<float> values(order.size());
  for (size_t i = 0; i < order.size(); ++i) values[i] = logits[order[i]];
  return draw_ranked(order, values, seq);
}

int32_t Sampler::draw_ranked(const std::vector<int32_t>& order, const std::vector<float>& values, Sequence& seq) const {
  const SamplingParams& p = seq.params();
  const double max_logit = values[0];
  const double inv_t = 1.0 / p.temperature;
  std::vector<double> probs(order.size());
  double kept = 0;
  for (size_t i = 0; i < order.size(); ++i)
    kept += probs[i] = std::exp((static_cast<double>(values[i]) - max_logit) * inv_t);
  size_t n = order.size();
  if (p.top_p < 1) {  // the smallest prefix reaching top_p of what top-k kept, at least one
    double cumulative = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      cumulative += probs[i];
      if (cumulative >= p.top_p * kept) {
        n = i + 1;
        break;
      }
    }
  }
  if (p.min_p > 0) {
    const double threshold = p.min_p * probs[0];
    while (n > 1 && probs[n - 1] < threshold) --n;
  }
  double mass = 0;
  for (size_t i = 0; i < n; ++i) mass += probs[i];
  double target = uniform(seq.rng) * mass;
  size_t last = 0;
  for (size_t i = 0; i < n; ++i) {
    if (probs[i] == 0) continue;
    last = i;
    target -= probs[i];
    if (target < 0) return order[i];
  }
  // Rounding kept the target a hair above zero: the last token that can be drawn, never a masked one (a grammar
  // leaving fewer than top_k tokens puts masked ones at the end of a whole row's ranking, not of the candidates').
  return order[last];
}

int32_t Sampler::candidates_needed(const Sequence& seq) const {
  const SamplingParams& p = seq.params();
  int32_t k = 0;
  if (p.temperature == 0)
    k = 1;
  else if (cuts_top_k(p))
    k = p.top_k;
  else if (p.top_p < 1)
    k = Backend::kMaxCandidates;  // top-p alone: as many as there are, and the mass of the rest
  if (k == 0) return 0;
  if (p.logprobs > 0) k = std::max(k, p.logprobs);
  return k <= Backend::kMaxCandidates ? k : 0;
}

bool Sampler::cuts_top_k(const SamplingParams& p) const {
  return p.top_k > 0 && p.top_k < vocab_size_;  // top_k >= vocab keeps every token
}

bool Sampler::needs_tempered_mass(const Sequence& seq) const {
  const SamplingParams& p = seq.params();
  return p.temperature > 0 && !cuts_top_k(p) && p.top_p < 1;
}

bool Sampler::masks_stop_tokens(const Sequence& seq) const {
  return seq.num_output_tokens() < seq.params().min_tokens;
}

void Sampler::listed_ids(const Sequence& seq, std::vector<int32_t>& out) const {
  const SamplingParams& p = seq.params();
  std::vector<int32_t> extra;  // a handful: bias ids, output tokens, masked ids
  for (const auto& [id, bias] : p.logit_bias) extra.push_back(id);
  if (p.frequency_penalty != 0 || p.presence_penalty != 0)
    for (const auto& [id, count] : seq.output_counts()) extra.push_back(id);
  if (masks_stop_tokens(seq)) {
    if (!p.ignore_eos) extra.insert(extra.end(), eos_token_ids_.begin(), eos_token_ids_.end());
    extra.insert(extra.end(), p.stop_token_ids.begin(), p.stop_token_ids.end());
  }
  std::sort(extra.begin(), extra.end());
  extra.erase(std::unique(extra.begin(), extra.end()), extra.end());
  if (p.repetition_penalty == 1.0f) {
    out.insert(out.end(), extra.begin(), extra.end());
    return;
  }
  const std::vector<int32_t>& seen = seq.distinct_tokens();  // already sorted and distinct
  std::set_union(seen.begin(), seen.end(), extra.begin(), extra.end(), std::back_inserter(out));
}

std::optional<SampledToken> Sampler::sample(const RowCandidates& row, Sequence& seq) const {
  const SamplingParams& p = seq.params();
  // The row restricted to candidates and listed tokens, adjusted exactly as sample() adjusts the whole row.
  std::vector<int32_t> ids;
  std::vector<float> raw;
  for (size_t i = 0; i < row.ids.size(); ++i)
    if (row.ids[i] >= 0) {
      ids.push_back(row.ids[i]);
      raw.push_back(row.logits[i]);
    }
  ids.insert(ids.end(), row.listed_ids.begin(), row.listed_ids.end());
  raw.insert(raw.end(), row.listed_logits.begin(), row.listed_logits.end());
  // Under a grammar the backend masked the row (fill_mask) before ranking: raw is the constrained row's, and a
  // grammar that leaves nothing at all is a case for the whole row (it decides the same way whatever the draw).
  if (ids.empty() && seq.matcher) return std::nullopt;
  BM_CHECK(!ids.empty());
  std::vector<float> adjusted = raw;
  const size_t num_candidates = ids.size() - row.listed_ids.size();
  adjust(seq, ListedLogits(row.listed_ids, adjusted.data() + num_candidates));
  // The grammar wins over min_tokens, as in the whole-row sample(): if the stop tokens it alone allows are masked,
  // nothing finite is left (every allowed unlisted token is a candidate or there is none), and the draw takes the
  // constrained row unadjusted.
  if (seq.matcher && masks_stop_tokens(seq) && !std::isfinite(*std::max_element(adjusted.begin(), adjusted.end())))
    adjusted = raw;
  std::vector<size_t> rank(ids.size());
  std::iota(rank.begin(), rank.end(), 0);
  SampledToken out;
  if (needs_tempered_mass(seq)) {
    BM_CHECK(row.tempered_lse.has_value());
    const bool all_unlisted_present = num_candidates < row.ids.size();  // padded: no unlisted id was left out
    const std::optional<int32_t> token =
        draw_top_p(ids, adjusted, num_candidates, all_unlisted_present, *row.tempered_lse, seq);
    if (!token) return std::nullopt;
    out.token_id = *token;
  } else {
    // Rank (adjusted logit, then id), as cpu::best_ids ranks the whole row; only the first top_k places matter.
    const size_t k = std::min<size_t>(p.temperature == 0 ? 1 : static_cast<size_t>(p.top_k), rank.size());
    std::partial_sort(rank.begin(), rank.begin() + static_cast<std::ptrdiff_t>(k), rank.end(), [&](size_t a, size_t b) {
      return adjusted[a] > adjusted[b] || (adjusted[a] == adjusted[b] && ids[a] < ids[b]);
    });
    if (p.temperature == 0) {
      out.token_id = ids[rank[0]];
    } else {
      std::vector<int32_t> order(k);
      std::vector<float> values(k);
      for (size_t i = 0; i < k; ++i) {
        order[i] = ids[rank[i]];
        values[i] = adjusted[rank[i]];
      }
      out.token_id = draw_ranked(order, values, seq);
    }
  }
  if (p.logprobs >= 0) {
    TokenLogprob lp;
    lp.token_id = out.token_id;
    const size_t at = static_cast<size_t>(std::find(ids.begin(), ids.end(), out.token_id) - ids.begin());
    lp.logprob = raw[at] - row.log_sum_exp;
    if (p.logprobs > 0) {
      const size_t n = std::min<size_t>(static_cast<size_t>(p.logprobs), rank.size());
      std::partial_sort(rank.begin(), rank.begin() + static_cast<std::ptrdiff_t>(n), rank.end(),
                        [&](size_t a, size_t b) { return raw[a] > raw[b] || (raw[a] == raw[b] && ids[a] < ids[b]); });
      for (size_t i = 0; i < n; ++i)
        if (std::isfinite(raw[rank[i]]))  // as raw_logprob: a grammar may leave fewer tokens than asked for
          lp.top.emplace_back(ids[rank[i]], raw[rank[i]] - row.log_sum_exp);
    }
    out.logprob = std::move(lp);
  }
  return out;
}

// Top-p over the whole vocabulary: the smallest set of best tokens holding top_p of the mass, found by a
// mass-guided quickselect in expected linear time (no sort of 150k entries), then a draw over the set in id order.
int32_t Sampler::draw_top_p(const std::vector<float>& logits, Sequence& seq) const {
  const SamplingParams& p = seq.params();
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  const float inv_t = static_cast<float>(1.0 / p.temperature);
  std::vector<WeightedId> entries;
  entries.reserve(logits.size());
  double total = 0;
  for (size_t id = 0; id < logits.size(); ++id) {
    const float w = std::exp((logits[id] - max_logit) * inv_t);
    if (w > 0) {
      entries.push_back({w, static_cast<int32_t>(id)});
      total += w;
    }
  }
  // Invariant: entries[0, begin) are in the set; the boundary lies in [begin, end).
  const double target = p.top_p * total;
  size_t begin = 0, end = entries.size();
  double mass_before = 0;
  std::optional<size_t> cut;
  while (begin < end && !cut) {
    const WeightedId pivot = entries[begin + (end - begin) / 2];
    auto split = std::partition(entries.begin() + begin, entries.begin() + end,
                                [&](const WeightedId& e) { return better(e, pivot); });
    const size_t upper_end = static_cast<size_t>(split - entries.begin());
    double upper = 0;
    for (size_t i = begin; i < upper_end; ++i) upper += entries[i].weight;
    if (mass_before + upper >= target && upper_end > begin) {
      end = upper_end;  // the boundary is among the better ones
      continue;
    }
    // The pivot comes next in rank order: move it to upper_end.
    auto pivot_at = std::find_if(entries.begin() + upper_end, entries.begin() + end,
                                 [&](const WeightedId& e) { return e.id == pivot.id; });
    std::iter_swap(entries.begin() + upper_end, pivot_at);
    mass_before += upper + pivot.weight;
    begin = upper_end + 1;
    if (mass_before >= target) cut = begin;
  }
  // Without a cut, rounding kept the sum a hair under the target: the set is everything ranked so far.
  entries.resize(std::max<size_t>(cut.value_or(begin), 1));
  std::sort(entries.begin(), entries.end(), [](const WeightedId& a, const WeightedId& b) { return a.id < b.id; });
  return draw_in_id_order(entries, p.min_p, seq.rng);
}

// Top-p from candidates: the same set as above if it lies inside the candidates and listed tokens. Their weights
// are the whole row's (same maximum, same float arithmetic), the rest of the mass comes from the device's tempered
// log-sum-exp. Every left-out token weighs at most the last candidate, so the set is certain only when its worst
// member weighs more than that (or no token was left out); otherwise the whole row decides.
std::optional<int32_t> Sampler::draw_top_p(const std::vector<int32_t>& ids, const std::vector<float>& adjusted,
                                           size_t num_candidates, bool all_unlisted_present, float tempered_lse,
                                           Sequence& seq) const {
  const SamplingParams& p = seq.params();
  const float max_logit = *std::max_element(adjusted.begin(), adjusted.end());
  const float inv_t = static_cast<float>(1.0 / p.temperature);
  std::vector<WeightedId> entries;
  double listed = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const float w = std::exp((adjusted[i] - max_logit) * inv_t);
    if (i >= num_candidates) listed += w;
    if (w > 0) entries.push_back({w, ids[i]});
  }
  if (entries.empty()) return std::nullopt;
  const float last_candidate = num_candidates > 0 ? std::exp((adjusted[num_candidates - 1] - max_logit) * inv_t) : 0;
  const double unlisted = std::isinf(tempered_lse) && tempered_lse < 0
                              ? 0.0
                              : std::exp(static_cast<double>(tempered_lse) - static_cast<double>(max_logit) * inv_t);
  const double target = p.top_p * (unlisted + listed);
  std::sort(entries.begin(), entries.end(), better);
  size_t kept = entries.size();
  double cumulative = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    cumulative += entries[i].weight;
    if (cumulative >= target) {
      kept = i + 1;
      break;
    }
  }
  const bool reached = cumulative >= target;
  if (!all_unlisted_present && (!reached || !(entries[kept - 1].weight > last_candidate))) return std::nullopt;
  entries.resize(kept);
  std::sort(entries.begin(), entries.end(), [](const WeightedId& a, const WeightedId& b) { return a.id < b.id; });
  return draw_in_id_order(entries, p.min_p, seq.rng);
}

// Neither top-k nor top-p: every token may be drawn, so no ranking is needed; one pass in id order (min-p only
// needs the largest weight, which is 1 after subtracting the maximum).
int32_t Sampler::draw_from_all(const std::vector<float>& logits, Sequence& seq) const {
  const SamplingParams& p = seq.params();
  const double max_logit = *std::max_element(logits.begin(), logits.end());
  const double inv_t = 1.0 / p.temperature;
  std::vector<double> probs(logits.size());
  double mass = 0;
  for (size_t id = 0; id < logits.size(); ++id) {
    double w = std::exp((static_cast<double>(logits[id]) - max_logit) * inv_t);
    if (w < p.min_p) w = 0;  // min_p × the top weight (1)
    mass += probs[id] = w;
  }
  double target = uniform(seq.rng) * mass;
  size_t last = 0;
  for (size_t id = 0; id < probs.size(); ++id) {
    if (probs[id] == 0) continue;
    last = id;
    target -= probs[id];
    if (target < 0) return static_cast<int32_t>(id);
  }
  return static_cast<int32_t>(last);
}

TokenLogprob Sampler::raw_logprob(std::span<const float> logits, int32_t token_id, int32_t num_top) const {
  const double max_logit = *std::max_element(logits.begin(), logits.end());
  double total = 0;
  for (float l : logits) total += std::exp(l - max_logit);
  const double log_total = std::log(total) + max_logit;
  TokenLogprob out;
  out.token_id = token_id;
  out.logprob = static_cast<float>(logits[token_id] - log_total);
  if (num_top > 0) {
    for (int32_t id : cpu::best_ids(logits, std::min<size_t>(num_top, logits.size())))
      if (std::isfinite(logits[id]))  // a grammar may leave fewer tokens than asked for
        out.top.emplace_back(id, static_cast<float>(logits[id] - log_total));
  }
  return out;
}

}  // namespace bm::engine
