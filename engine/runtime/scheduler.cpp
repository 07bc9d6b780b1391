#include "engine/runtime/scheduler.h"

#include <algorithm>

#include "common/check.h"

namespace bm::engine {

Scheduler::Scheduler(SchedulerOptions options, BlockManager& blocks) : options_(options), blocks_(blocks) {
  BM_CHECK(options_.max_num_seqs > 0 && options_.max_num_batched_tokens > 0);
}

void Scheduler::add(std::unique_ptr<Sequence> seq) {
  seq->status = SequenceStatus::kWaiting;
  waiting_.push_back(seq.get());
  owned_[seq->id()] = std::move(seq);
}

ScheduledBatch Scheduler::schedule() {
  ScheduledBatch batch;
  int32_t budget = options_.max_num_batched_tokens;
  // A step that had to preempt admits nobody: the blocks it freed go to the sequences already running.
  if (schedule_running(batch, budget)) admit_waiting(batch, budget);
  for (const ScheduledChunk& c : batch.chunks) batch.num_tokens += c.num_new_tokens;
  return batch;
}

bool Scheduler::schedule_running(ScheduledBatch& batch, int32_t& budget) {
  bool preempted = false;
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence* seq = running_[i];
    const int32_t n = std::min(seq->num_uncomputed_tokens(), budget);
    if (n <= 0) continue;
    while (!blocks_.reserve(*seq, seq->num_computed_tokens + n)) {
      Sequence* victim = running_.back();
      preempt(victim);
      preempted = true;
      if (victim == seq) break;
    }
    if (seq->status != SequenceStatus::kRunning) break;  // it preempted itself: nothing after it is left
    batch.chunks.push_back({seq, n, seq->num_computed_tokens + n == seq->num_tokens()});
    budget -= n;
  }
  return !preempted;
}

bool Scheduler::waits_for_leader(const Sequence& seq) const {
  if (seq.prefill_leader_id < 0) return false;
  auto it = owned_.find(seq.prefill_leader_id);
  return it != owned_.end() && it->second->in_prefill();
}

void Scheduler::admit_waiting(ScheduledBatch& batch, int32_t& budget) {
  while (!waiting_.empty() && budget > 0 && static_cast<int32_t>(running_.size()) < options_.max_num_seqs) {
    Sequence* seq = waiting_.front();
    if (waits_for_leader(*seq)) break;
    if (seq->block_table.empty()) blocks_.attach_cached_prefix(*seq);
    const int32_t n = std::min(seq->num_uncomputed_tokens(), budget);
    if (!blocks_.reserve(*seq, seq->num_computed_tokens + n)) {
      blocks_.release(*seq);  // give back the prefix hits; they stay cached for the next try
      seq->num_computed_tokens = 0;
      break;
    }
    waiting_.pop_front();
    seq->status = SequenceStatus::kRunning;
    running_.push_back(seq);
    batch.chunks.push_back({seq, n, seq->num_computed_tokens + n == seq->num_tokens()});
    budget -= n;
  }
}

void Scheduler::preempt(Sequence* seq) {
  running_.erase(std::find(running_.begin(), running_.end(), seq));
  blocks_.release(*seq);
  seq->num_computed_tokens = 0;
  seq->status = SequenceStatus::kWaiting;
  ++seq->num_preemptions;
  ++num_preemptions_;
  waiting_.push_front(seq);
}

void Scheduler::mark_computed(const ScheduledBatch& batch) {
  for (const ScheduledChunk& c : batch.chunks) {
    c.seq->num_computed_tokens += c.num_new_tokens;
    blocks_.cache_full_blocks(*c.seq);
  }
}

void Scheduler::remove(Sequence* seq) {
  if (seq->status == SequenceStatus::kRunning) {
    running_.erase(std::find(running_.begin(), running_.end(), seq));
  } else if (seq->status == SequenceStatus::kWaiting) {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), seq));
  }
  blocks_.release(*seq);
  seq->status = SequenceStatus::kFinished;
  owned_.erase(seq->id());
}

std::vector<Sequence*> Scheduler::sequences() const {
  std::vector<Sequence*> all(running_.begin(), running_.end());
  all.insert(all.end(), waiting_.begin(), waiting_.end());
  return all;
}

}  // namespace bm::engine
