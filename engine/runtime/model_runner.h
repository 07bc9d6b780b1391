#pragma once
// Runs one scheduled step on the model: the chunks become a ForwardBatch, the model returns one row of logits per
// chunk that samples.
#include <vector>

#include "absl/status/status.h"
#include "engine/models/causal_lm.h"
#include "engine/runtime/scheduler.h"

namespace bm::engine {

class ModelRunner {
 public:
  explicit ModelRunner(CausalLM& model) : model_(model) {}
  // `logits` gets vocab_size floats per chunk with wants_logits, in chunk order.
  absl::Status run(const ScheduledBatch& batch, std::vector<float>& logits);
  // The same step, returning sampling candidates for those chunks (CausalLM::forward_candidates).
  absl::Status run(const ScheduledBatch& batch, const CandidateRequest& request, Candidates& candidates);

 private:
  void build_forward(const ScheduledBatch& batch);

  CausalLM& model_;
  ForwardBatch forward_;  // reused between steps to keep its vectors' capacity
};

}  // namespace bm::engine
