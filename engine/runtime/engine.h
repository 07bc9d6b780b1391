#pragma once
// The engine: a loaded model, its KV cache and a step loop on its own thread. Requests come in through
// submit() from any thread; their outputs go out through each request's callback, on the engine thread.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/dtype.h"
#include "engine/model/generation_config.h"
#include "engine/models/causal_lm.h"
#include "engine/models/prompt_media.h"
#include "engine/runtime/batch_sampler.h"
#include "engine/runtime/block_manager.h"
#include "engine/runtime/encoder_cache.h"
#include "engine/runtime/model_runner.h"
#include "engine/runtime/sampler.h"
#include "engine/runtime/scheduler.h"
#include "engine/runtime/sequence.h"

namespace bm::engine {

// Decode steps as recorded step graphs (CUDA graphs): kAuto turns them on for a GPU backend and off on the CPU,
// where recording saves nothing (the CPU backend records only so tests can check the discipline); kOff is vLLM's
// --enforce-eager.
enum class DecodeGraphMode { kAuto, kOn, kOff };

struct EngineOptions {
  std::string backend = "cpu";       // see LoadOptions
  int32_t num_threads = 0;           // CPU backend threads (all ranks together); 0: one per logical core
  int32_t tensor_parallel_size = 1;  // ranks the model is split over (LoadOptions)
  int32_t device_index = 0;     // CUDA backend: the device ordinal (after CUDA_VISIBLE_DEVICES)
  // CUDA tensor parallelism: the GPU of each rank (LoadOptions::devices); empty: 0 .. tensor_parallel_size-1.
  std::vector<int32_t> devices;
  int32_t max_model_len = 0;    // 0: the model's context, capped to what the KV cache holds
  int32_t max_num_seqs = 256;
  int32_t max_num_batched_tokens = 0;  // 0: 512 on the CPU (a step stays short), 8192 on a GPU
  int64_t kv_cache_bytes = 0;          // 0: from the device's memory (see plan_kv_cache_blocks)
  double gpu_memory_utilization = 0.9;
  uint64_t seed = 2025;  // draws the seeds of requests that bring none
  bool enable_prefix_caching = true;
  // Greedy and top-k rows bring back sampling candidates instead of whole rows of logits (the same tokens; far
  // less to copy off a GPU). Off: every row comes back whole (a check of the candidate path).
  bool sample_from_candidates = true;
  // Top-p rows without top-k from candidates plus their tempered mass. Unset: off the CPU only — on the CPU
  // backend the rows are already in host memory, and the whole-row draw costs less than the mass and the
  // occasional fallback. Tests set it to check the GPU path on the CPU.
  std::optional<bool> top_p_from_candidates;
  // Rows under a grammar from candidates too, the grammar's mask applied by the backend before it selects them
  // (Backend::top_candidates). Unset: off the CPU only — there the rows are in host memory already and the
  // whole-row mask costs less than filling a bitmask for the backend. Tests set it to check the GPU path on the CPU.
  std::optional<bool> grammar_from_candidates;
  DecodeGraphMode decode_graphs = DecodeGraphMode::kAuto;
  // The KV cache's element type, F32 or BF16. Unset: default_kv_cache_dtype(backend), BF16 on every backend.
  std::optional<DType> kv_cache_dtype;
  // Loading phases ("reading weights", "allocating KV cache") with a fraction in [0, 1] or -1.
  std::function<void(const std::string& phase, double fraction)> on_progress;
};

struct EngineStats {
  int64_t kv_capacity_tokens = 0;
  int32_t num_kv_blocks = 0;
  int32_t num_kv_blocks_in_use = 0;
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  int64_t num_preemptions = 0;
  int64_t num_steps = 0;
  DecodeGraphStats decode_graphs;  // all zero while graphs are off
  int64_t media_encoded = 0;       // images and videos run through the vision tower
  int64_t media_cache_hits = 0;    // ... and taken from the encoder cache instead
  std::string failure;             // empty while healthy; after a device fault, why nothing runs any more
};

// Aborting is safe from any thread (the request's own callback included) and after the engine is gone.
class RequestHandle {
 public:
  RequestHandle(std::shared_ptr<Request> request, std::function<void()> wake)
      : request_(std::move(request)), wake_(std::move(wake)) {}
  void abort();

 private:
  std::shared_ptr<Request> request_;
  std::function<void()> wake_;
};

// The blocks a KV budget buys; an error sentence when not even one block fits. `reclaimable_bytes`: device memory
// counted as used now that the new cache will replace (the dry run's cache).
absl::StatusOr<int32_t> plan_kv_cache_blocks(const CausalLM& model, const EngineOptions& options,
                                             int64_t reclaimable_bytes = 0);

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> load(const std::filesystem::path& model_dir,
                                                      const EngineOptions& options);
  // Over an already loaded model (tests): sizes its KV cache and starts the step loop.
  static absl::StatusOr<std::unique_ptr<Engine>> create(std::unique_ptr<CausalLM> model, GenerationConfig generation,
                                                        const EngineOptions& options);
  // Unfinished requests end with FinishReason::kAbort. Never from the engine's own thread (an output callback):
  // it joins that thread; an owner that may let go there hands the engine to another thread (on_engine_thread).
  ~Engine();
  bool on_engine_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

  // media: the prompt's images and videos (prompt_media.h), their pad runs already expanded in prompt_ids; null
  // for text. A prompt whose pad runs do not match the items, or media for a model without a vision tower, is an
  // InvalidArgument / FailedPrecondition naming it.
  absl::StatusOr<std::unique_ptr<RequestHandle>> submit(std::vector<int32_t> prompt_ids, const SamplingParams& params,
                                                        OutputCallback on_output,
                                                        std::shared_ptr<const PromptMedia> media = nullptr);
  // OK when the model encodes images and videos (a vision tower loaded on a backend that runs it); otherwise a
  // FailedPrecondition whose message says why, for the API's 400.
  absl::Status media_support() const;
  EngineStats stats() const;
  // Requests of this shape that run at once: KV blocks each needs, against the cache, capped by max_num_seqs.
  int32_t max_concurrency(int32_t prompt_tokens, int32_t completion_tokens) const;

  int32_t max_model_len() const { return max_model_len_; }
  int32_t max_num_seqs() const { return scheduler_options_.max_num_seqs; }
  const CausalLMInfo& model_info() const { return model_->info(); }
  const GenerationConfig& generation_config() const { return generation_; }
  std::string backend_name() const { return model_->backend_name(); }
  // What one rank's device holds of the KV cache (every rank holds the same blocks, each its share of the heads),
  // and the sum over the ranks.
  int64_t kv_cache_bytes_per_rank() const {
    return static_cast<int64_t>(blocks_.num_blocks()) * kBlockSize * model_->info().kv_bytes_per_token;
  }
  int64_t kv_cache_bytes() const { return kv_cache_bytes_per_rank() * model_->info().tensor_parallel_size; }

 private:
  Engine(std::unique_ptr<CausalLM> model, GenerationConfig generation, int32_t num_blocks, int32_t max_model_len,
         const EngineOptions& options);
  void loop();
  bool wait_for_work();
  void step();
  void admit_submissions();
  void encode_media(const std::vector<Sequence*>& added);
  void finish_aborted();
  void append_tokens(const std::vector<Sequence*>& sampled, std::vector<SampledToken>& tokens);
  std::optional<FinishReason> stop_reason(const Sequence& seq, int32_t token_id) const;
  void fail(const ScheduledBatch& batch, const std::string& error);
  void finish(Sequence* seq, FinishReason reason, std::string error = {});
  void deliver(Sequence* seq);
  SequenceOutput take_output(Sequence* seq);
  void publish_stats();
  // A device fault: every request ends with an error and later submissions are refused.
  void fail_after_exception(const std::string& what);
  void fail_engine(const absl::Status& fault);
  bool failed() const { return failed_.load(); }
  std::string failure() const;

  std::unique_ptr<CausalLM> model_;
  GenerationConfig generation_;
  int32_t max_model_len_;
  SchedulerOptions scheduler_options_;
  BlockManager blocks_;
  Scheduler scheduler_;
  ModelRunner runner_;
  Sampler sampler_;
  BatchSampler batch_sampler_;
  bool use_candidates_;
  bool top_p_from_candidates_;
  bool grammar_from_candidates_;
  // Reused between steps (engine thread only).
  std::vector<float> logits_;
  CandidateRequest candidate_request_;
  Candidates candidates_;
  std::vector<int32_t> unsettled_;
  EncoderCache encoder_cache_{int64_t{512} << 20};  // vision tower outputs by media hash
  std::mt19937_64 seed_rng_;                        // guarded by mutex_

  // Shared with submitters and handles.
  struct Inbox {
    std::mutex mutex;
    std::condition_variable cv;
    std::vector<std::unique_ptr<Sequence>> submitted;
    bool abort_requested = false;
    bool stopping = false;
  };
  std::shared_ptr<Inbox> inbox_;
  mutable std::mutex mutex_;
  int64_t next_id_ = 1;  // guarded by mutex_
  std::string failure_;  // guarded by mutex_
  std::atomic<bool> failed_{false};

  std::atomic<int32_t> stat_blocks_in_use_{0}, stat_running_{0}, stat_waiting_{0};
  std::atomic<int64_t> stat_preemptions_{0}, stat_steps_{0}, stat_media_encoded_{0}, stat_media_cache_hits_{0};
  DecodeGraphStats stat_decode_graphs_;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace bm::engine
