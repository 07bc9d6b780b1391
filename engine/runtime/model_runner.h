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
  // Issues the step's forward (CausalLM::begin_forward): on a device backend it returns while the device runs,
  // so the caller can prepare the step's sampling inputs meanwhile. One finish call must follow.
  absl::Status begin(const ScheduledBatch& batch);
  // `logits` gets vocab_size floats per chunk with wants_logits, in chunk order.
  absl::Status finish(std::vector<float>& logits);
  // Or sampling candidates for those chunks (CausalLM::finish_candidates).
  absl::Status finish(const CandidateRequest& request, Candidates& candidates);

 private:
  void build_forward(const ScheduledBatch& batch);

  CausalLM& model_;
  ForwardBatch forward_;  // reused between steps to keep its vectors' capacity; the model reads it until finish
};

}  // namespace bm::engine
