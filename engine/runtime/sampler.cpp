#include "engine/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_set>

#include "common/check.h"

namespace bm::engine {
namespace {

constexpr float kMasked = -std::numeric_limits<float>::infinity();

int32_t argmax(std::span<const float> x) {
  return static_cast<int32_t>(std::max_element(x.begin(), x.end()) - x.begin());  // ties: the lowest id
}

// A uniform double in [0, 1) from the sequence's generator: 53 random bits, the same on every platform (the
// standard distributions' algorithms are implementation-defined).
double uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

}  // namespace

Sampler::Sampler(int32_t vocab_size, std::vector<int32_t> eos_token_ids)
    : vocab_size_(vocab_size), eos_token_ids_(std::move(eos_token_ids)) {}

bool Sampler::is_eos(int32_t token_id) const {
  return std::find(eos_token_ids_.begin(), eos_token_ids_.end(), token_id) != eos_token_ids_.end();
}

SampledToken Sampler::sample(std::span<const float> raw, Sequence& seq) {
  BM_CHECK(static_cast<int32_t>(raw.size()) == vocab_size_);
  const SamplingParams& p = seq.params();
  std::vector<float> logits(raw.begin(), raw.end());
  for (const auto& [id, bias] : p.logit_bias) logits[id] += bias;
  apply_penalties(logits, seq);
  mask_stop_tokens(logits, seq);
  SampledToken out;
  out.token_id = p.temperature == 0 ? argmax(logits) : draw(logits, seq);
  if (p.logprobs >= 0) out.logprob = raw_logprob(raw, out.token_id, p.logprobs);
  return out;
}

void Sampler::apply_penalties(std::vector<float>& logits, const Sequence& seq) const {
  const SamplingParams& p = seq.params();
  if (p.repetition_penalty != 1.0f) {
    // As transformers and vLLM: every token of the prompt and the output, once.
    std::unordered_set<int32_t> seen(seq.token_ids().begin(), seq.token_ids().end());
    for (int32_t id : seen) {
      float& l = logits[id];
      l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    }
  }
  if (p.frequency_penalty != 0 || p.presence_penalty != 0) {
    for (const auto& [id, count] : seq.output_counts())
      logits[id] -= p.frequency_penalty * static_cast<float>(count) + p.presence_penalty;
  }
}

void Sampler::mask_stop_tokens(std::vector<float>& logits, const Sequence& seq) const {
  const SamplingParams& p = seq.params();
  if (seq.num_output_tokens() >= p.min_tokens) return;
  if (!p.ignore_eos)
    for (int32_t id : eos_token_ids_) logits[id] = kMasked;
  for (int32_t id : p.stop_token_ids) logits[id] = kMasked;
}

int32_t Sampler::draw(std::vector<float>& logits, Sequence& seq) const {
  const SamplingParams& p = seq.params();
  // Candidates sorted by logit, best first; top-k and a generous top-p cut keep the sort short.
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  size_t keep = p.top_k > 0 ? std::min<size_t>(p.top_k, order.size()) : order.size();
  const size_t first_try = std::min<size_t>(keep, 1024);
  std::partial_sort(order.begin(), order.begin() + first_try, order.end(), better);
  const double max_logit = logits[order[0]];
  const double inv_t = 1.0 / p.temperature;
  double total = 0;
  for (float l : logits) total += std::exp((l - max_logit) * inv_t);
  if (first_try < keep) {
    // The 1024 best may already hold top_p of the mass; otherwise sort everything.
    double head = 0;
    for (size_t i = 0; i < first_try; ++i) head += std::exp((logits[order[i]] - max_logit) * inv_t);
    if (p.top_p < 1 && head >= p.top_p * total) keep = first_try;
    else std::sort(order.begin(), order.end(), better);
  }
  order.resize(keep);
  std::vector<double> probs(keep);
  double kept_total = 0;
  for (size_t i = 0; i < keep; ++i) kept_total += probs[i] = std::exp((logits[order[i]] - max_logit) * inv_t);
  // Normalise over the top-k survivors, then top-p (smallest prefix reaching top_p, at least one) and min-p.
  size_t n = keep;
  if (p.top_p < 1) {
    double cumulative = 0;
    for (size_t i = 0; i < keep; ++i) {
      cumulative += probs[i] / kept_total;
      if (cumulative >= p.top_p) {
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
  for (size_t i = 0; i < n; ++i) {
    target -= probs[i];
    if (target < 0) return order[i];
  }
  return order[n - 1];
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
    std::vector<int32_t> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    const size_t k = std::min<size_t>(num_top, order.size());
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (size_t i = 0; i < k; ++i) out.top.emplace_back(order[i], static_cast<float>(logits[order[i]] - log_total));
  }
  return out;
}

}  // namespace bm::engine
