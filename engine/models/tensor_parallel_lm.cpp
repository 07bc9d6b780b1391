#include "engine/models/tensor_parallel_lm.h"

#include "common/check.h"

namespace bm::engine {

std::unique_ptr<TensorParallelLM> TensorParallelLM::create(std::vector<std::unique_ptr<DecoderLM>> ranks,
                                                           std::vector<std::unique_ptr<Communicator>> communicators) {
  BM_CHECK(!ranks.empty() && ranks.size() == communicators.size());
  return std::unique_ptr<TensorParallelLM>(new TensorParallelLM(std::move(ranks), std::move(communicators)));
}

TensorParallelLM::TensorParallelLM(std::vector<std::unique_ptr<DecoderLM>> ranks,
                                   std::vector<std::unique_ptr<Communicator>> communicators)
    : communicators_(std::move(communicators)), ranks_(std::move(ranks)) {
  const int32_t size = static_cast<int32_t>(ranks_.size());
  info_ = ranks_[0]->info();
  info_.tensor_parallel_size = size;
  for (const auto& rank : ranks_) info_.rank_weight_bytes.push_back(rank->info().weight_bytes);
  for (int32_t r = 1; r < size; ++r) {
    info_.weight_bytes += ranks_[static_cast<size_t>(r)]->info().weight_bytes;
    info_.decode_read_bytes += ranks_[static_cast<size_t>(r)]->info().decode_read_bytes;
  }
  follower_logits_.resize(ranks_.size());
  results_.resize(ranks_.size());
  for (int32_t r = 1; r < size; ++r) threads_.emplace_back([this, r] { worker(r); });
}

TensorParallelLM::~TensorParallelLM() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void TensorParallelLM::worker(int32_t rank) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<absl::Status(int32_t)>* task = nullptr;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      task = task_;
    }
    absl::Status status = run_rank(*task, rank);
    abort_if_split(rank, status);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      results_[static_cast<size_t>(rank)] = std::move(status);
      --pending_;
    }
    cv_.notify_all();
  }
}

absl::Status TensorParallelLM::on_all_ranks(const std::function<absl::Status(int32_t)>& task) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    task_ = &task;
    pending_ = static_cast<int32_t>(threads_.size());
    ++generation_;
  }
  cv_.notify_all();
  results_[0] = run_rank(task, 0);
  abort_if_split(0, results_[0]);
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return pending_ == 0; });
  task_ = nullptr;
  injected_rank_ = -1;
  // One error: an aborted group's (Internal, a device fault to the engine, which then stops) names the rank that
  // failed and why; it wins over that rank's own status, which alone would fail only the step's requests.
  for (const absl::Status& s : results_)
    if (absl::IsInternal(s)) return s;
  for (const absl::Status& s : results_)
    if (!s.ok()) return s;
  return absl::OkStatus();
}

absl::Status TensorParallelLM::run_rank(const std::function<absl::Status(int32_t)>& task, int32_t rank) {
  if (rank == injected_rank_) return injected_status_;  // set before the step's generation was published
  return task(rank);
}

void TensorParallelLM::fail_next_step_on_rank(int32_t rank, absl::Status status) {
  BM_CHECK(rank >= 0 && rank < static_cast<int32_t>(ranks_.size()) && !status.ok());
  std::lock_guard<std::mutex> lock(mutex_);
  injected_rank_ = rank;
  injected_status_ = std::move(status);
}

void TensorParallelLM::abort_if_split(int32_t rank, const absl::Status& status) {
  // Every input check runs identically on every rank before any collective, so an invalid request (or an
  // unsupported feature) fails all of them alike and nobody waits. Resource exhaustion and faults one rank can
  // meet alone, possibly while its peers already sit in a collective it will never join: give up on the group
  // (every rank's collectives return, the waiting ranks report the aborted group as a device fault naming this
  // rank, and the engine fails instead of hanging). Aborting twice is harmless.
  const absl::StatusCode code = status.code();
  if (code == absl::StatusCode::kResourceExhausted || code == absl::StatusCode::kInternal ||
      code == absl::StatusCode::kUnknown || code == absl::StatusCode::kAborted ||
      code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDataLoss)
    communicators_[static_cast<size_t>(rank)]->abort(std::string(status.message()));
}

const ForwardBatch& TensorParallelLM::follower_batch(const ForwardBatch& batch) {
  follower_batch_ = batch;
  for (SequenceChunk& chunk : follower_batch_.sequences) chunk.wants_logits = false;
  return follower_batch_;
}

int64_t TensorParallelLM::device_memory_total_bytes() const {
  // CPU ranks share the host's memory: each rank's share.
  const int64_t total = ranks_[0]->device_memory_total_bytes();
  return backend_name() == "cpu" ? total / static_cast<int64_t>(ranks_.size()) : total;
}

int64_t TensorParallelLM::device_memory_free_bytes() const {
  int64_t free = ranks_[0]->device_memory_free_bytes();
  if (backend_name() == "cpu") return free / static_cast<int64_t>(ranks_.size());
  for (const auto& rank : ranks_) free = std::min(free, rank->device_memory_free_bytes());
  return free;
}

absl::Status TensorParallelLM::allocate_kv_cache(int32_t num_blocks) {
  return on_all_ranks([&](int32_t r) { return ranks_[static_cast<size_t>(r)]->allocate_kv_cache(num_blocks); });
}

absl::Status TensorParallelLM::enable_decode_graphs(int32_t max_seqs) {
  return on_all_ranks([&](int32_t r) { return ranks_[static_cast<size_t>(r)]->enable_decode_graphs(max_seqs); });
}

absl::Status TensorParallelLM::forward(const ForwardBatch& batch, std::vector<float>& logits) {
  const ForwardBatch& followers = follower_batch(batch);
  return on_all_ranks([&](int32_t r) {
    if (r == 0) return ranks_[0]->forward(batch, logits);
    return ranks_[static_cast<size_t>(r)]->forward(followers, follower_logits_[static_cast<size_t>(r)]);
  });
}

absl::Status TensorParallelLM::forward_candidates(const ForwardBatch& batch, const CandidateRequest& request,
                                                  Candidates& out) {
  const ForwardBatch& followers = follower_batch(batch);
  return on_all_ranks([&](int32_t r) {
    if (r == 0) return ranks_[0]->forward_candidates(batch, request, out);
    return ranks_[static_cast<size_t>(r)]->forward(followers, follower_logits_[static_cast<size_t>(r)]);
  });
}

absl::Status TensorParallelLM::last_logits_rows(std::span<const int32_t> rows, std::vector<float>& out) {
  return ranks_[0]->last_logits_rows(rows, out);
}

}  // namespace bm::engine
