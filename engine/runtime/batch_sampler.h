#pragma once
// Samples the rows of one step's logits in parallel: each row belongs to one sequence and draws from that
// sequence's own generator, so the tokens do not depend on the thread count or on what else is in the batch.
// A large decode batch (256 rows of a 152k vocabulary) would otherwise cost the host more than the GPU step.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/backend/cpu/thread_pool.h"
#include "engine/models/causal_lm.h"
#include "engine/runtime/sampler.h"

namespace bm::engine {

class BatchSampler {
 public:
  // num_threads counts the calling thread; 0: one per logical core, at most 16.
  BatchSampler(const Sampler& sampler, int32_t num_threads);

  // out[i] = the token for seqs[i] from logits row i (logits holds seqs.size() rows of the vocabulary).
  void sample(std::span<const float> logits, std::span<Sequence* const> seqs, std::vector<SampledToken>& out);
  // The same from candidates (CausalLM::forward_candidates) made for `request`, row i for seqs[i]. The rows
  // whose draw the candidates cannot settle (a top-p nucleus reaching past them) are listed in `unsettled`, in
  // order, with nothing drawn for them: they need their whole row (sample_unsettled).
  void sample(const Candidates& candidates, const CandidateRequest& request, std::span<Sequence* const> seqs,
              std::vector<SampledToken>& out, std::vector<int32_t>& unsettled);
  // Draws out[unsettled[j]] from whole_rows row j, after putting the listed logits back where the device's
  // candidate selection may have overwritten them.
  void sample_unsettled(std::vector<float>& whole_rows, const Candidates& candidates, const CandidateRequest& request,
                        std::span<Sequence* const> seqs, std::span<const int32_t> unsettled,
                        std::vector<SampledToken>& out);
  // Whether every sequence's next token can come from candidates; if so, fills the request for them, with the
  // allowed-token mask of each sequence under a grammar (Sampler::fill_mask). Top-p rows without top-k count only
  // when `top_p` is set (they may need their whole row after all; worth it only when rows must cross from a
  // device); rows under a grammar only when `grammar` is set (their masks cost a fill and an upload).
  bool plan_candidates(std::span<Sequence* const> seqs, CandidateRequest& request, bool top_p = true,
                       bool grammar = true) const;
  int32_t num_threads() const { return pool_->num_threads(); }

 private:
  const Sampler& sampler_;
  std::unique_ptr<cpu::ThreadPool> pool_;
};

}  // namespace bm::engine
