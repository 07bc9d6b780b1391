#include "engine/runtime/batch_sampler.h"

#include <algorithm>
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

void BatchSampler::sample(std::span<const float> logits, std::span<Sequence* const> seqs, std::vector<SampledToken>& out) {
  const size_t vocab = static_cast<size_t>(sampler_.vocab_size());
  BM_CHECK(logits.size() == seqs.size() * vocab);
  out.assign(seqs.size(), SampledToken{});
  // One row per chunk: rows cost very different amounts (greedy vs. a full-vocabulary draw with logprobs).
  pool_->parallel_for(static_cast<int64_t>(seqs.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = sampler_.sample(logits.subspan(static_cast<size_t>(i) * vocab, vocab), *seqs[i]);
  });
}

}  // namespace bm::engine
