#pragma once
// One model split over tensor-parallel ranks (docs/tensor-parallel.md), seen by the runtime as one CausalLM: one
// scheduler and one block manager decide each step, and every rank runs it at once — rank 0 on the caller's
// thread, the others on a thread each — meeting in the all-reduces of its row-parallel layers. Each rank holds its
// share of the KV cache (the same block ids on every rank), so capacity grows with the ranks. Only rank 0 holds
// the lm_head and computes logits; sampling happens once, on them. Images and videos are encoded by rank 0's
// vision tower; every rank reads the same embeddings.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/communicator.h"
#include "engine/models/causal_lm.h"
#include "engine/models/decoder_lm.h"

namespace bm::engine {

class TensorParallelLM final : public CausalLM {
 public:
  // ranks[i] is rank i, already given communicators[i] (set_communicator); both lists as long as the group.
  static std::unique_ptr<TensorParallelLM> create(std::vector<std::unique_ptr<DecoderLM>> ranks,
                                                  std::vector<std::unique_ptr<Communicator>> communicators);
  ~TensorParallelLM() override;

  const CausalLMInfo& info() const override { return info_; }
  int64_t device_memory_total_bytes() const override;
  int64_t device_memory_free_bytes() const override;
  std::string backend_name() const override { return ranks_[0]->backend_name(); }
  absl::Status allocate_kv_cache(int32_t num_blocks) override;
  absl::Status forward(const ForwardBatch& batch, std::vector<float>& logits) override;
  absl::Status forward_candidates(const ForwardBatch& batch, const CandidateRequest& request, Candidates& out) override;
  absl::Status last_logits_rows(std::span<const int32_t> rows, std::vector<float>& out) override;
  absl::Status enable_decode_graphs(int32_t max_seqs) override;
  DecodeGraphStats decode_graph_stats() const override { return ranks_[0]->decode_graph_stats(); }
  absl::Status media_support() const override { return ranks_[0]->media_support(); }
  absl::StatusOr<std::shared_ptr<SequenceMedia>> prepare_media(std::span<const int32_t> prompt_ids,
                                                               const PromptMedia* media) const override {
    return ranks_[0]->prepare_media(prompt_ids, media);
  }
  absl::StatusOr<std::vector<std::vector<float>>> encode_media(std::span<const MediaItem* const> items) override {
    return ranks_[0]->encode_media(items);
  }
  int64_t media_activation_bytes() const override { return ranks_[0]->media_activation_bytes(); }

  // For tests: in the next step run on all ranks, rank `rank` returns `status` instead of running — a failure one
  // rank meets alone (an allocation) while its peers go on into the step's first collective.
  void fail_next_step_on_rank(int32_t rank, absl::Status status);

 private:
  TensorParallelLM(std::vector<std::unique_ptr<DecoderLM>> ranks,
                   std::vector<std::unique_ptr<Communicator>> communicators);
  // Runs task(rank) on every rank at once and waits for all; the first failing rank's status.
  absl::Status on_all_ranks(const std::function<absl::Status(int32_t)>& task);
  // The step the other ranks run: the same tokens and blocks, no logits.
  const ForwardBatch& follower_batch(const ForwardBatch& batch);
  // After rank `rank` returned `status`: a failure only that rank may have met aborts the group (Communicator::abort).
  void abort_if_split(int32_t rank, const absl::Status& status);
  // task(rank), or the injected failure (fail_next_step_on_rank).
  absl::Status run_rank(const std::function<absl::Status(int32_t)>& task, int32_t rank);
  void worker(int32_t rank);

  std::vector<std::unique_ptr<Communicator>> communicators_;  // outlive the ranks, which point at them
  std::vector<std::unique_ptr<DecoderLM>> ranks_;
  CausalLMInfo info_;
  ForwardBatch follower_batch_;
  std::vector<std::vector<float>> follower_logits_;  // stays empty: followers want none

  // Hand-off to the follower threads: a task and a generation number; each follower runs a generation once.
  std::mutex mutex_;
  std::condition_variable cv_;
  const std::function<absl::Status(int32_t)>* task_ = nullptr;
  uint64_t generation_ = 0;
  int32_t pending_ = 0;
  std::vector<absl::Status> results_;
  bool stopping_ = false;
  int32_t injected_rank_ = -1;
  absl::Status injected_status_;
  std::vector<std::thread> threads_;
};

}  // namespace bm::engine
