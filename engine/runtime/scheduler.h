#pragma once
// Continuous batching: each step takes the running sequences (decodes and unfinished prefill chunks) first, then
// admits waiting ones first come first served, all under a token budget (chunked prefill). When blocks run out,
// the newest running sequence is preempted: its blocks are freed and it waits to be recomputed.
#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

#include "engine/runtime/block_manager.h"
#include "engine/runtime/sequence.h"

namespace bm::engine {

struct SchedulerOptions {
  int32_t max_num_seqs = 256;             // running at once
  int32_t max_num_batched_tokens = 2048;  // tokens per step
};

struct ScheduledChunk {
  Sequence* seq = nullptr;
  int32_t num_new_tokens = 0;  // tokens [seq->num_computed_tokens, + num_new_tokens) run this step
  bool wants_logits = false;   // the chunk reaches the sequence's last token, so it samples
};

struct ScheduledBatch {
  std::vector<ScheduledChunk> chunks;
  int32_t num_tokens = 0;
  bool empty() const { return chunks.empty(); }
};

class Scheduler {
 public:
  Scheduler(SchedulerOptions options, BlockManager& blocks);

  void add(std::unique_ptr<Sequence> seq);
  ScheduledBatch schedule();
  // After a successful forward: the chunks' tokens are in the cache.
  void mark_computed(const ScheduledBatch& batch);
  // Removes a sequence (finished or aborted) and returns its blocks.
  void remove(Sequence* seq);

  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  int64_t num_preemptions() const { return num_preemptions_; }
  // Every sequence the scheduler holds, waiting ones included.
  std::vector<Sequence*> sequences() const;

 private:
  bool schedule_running(ScheduledBatch& batch, int32_t& budget);
  void admit_waiting(ScheduledBatch& batch, int32_t& budget);
  bool waits_for_leader(const Sequence& seq) const;
  void preempt(Sequence* seq);

  SchedulerOptions options_;
  BlockManager& blocks_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // admission order: the newest is preempted first
  std::unordered_map<int64_t, std::unique_ptr<Sequence>> owned_;
  int64_t num_preemptions_ = 0;
};

}  // namespace bm::engine
