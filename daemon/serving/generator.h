#pragma once
// What the OpenAI layer needs from a loaded engine: submit a tokenised prompt, receive tokens as they come,
// abort. The engine adapter implements it over engine::Engine; tests implement it with a scripted fake.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/models/prompt_media.h"
#include "engine/runtime/sampling_params.h"

namespace bm::engine::grammar {
class CompiledGrammar;
}

namespace bm::daemon::serving {

// What a request asks of the sampler: the engine's own SamplingParams, passed through as they are (one definition
// of the sampling settings; the daemon submits one engine request per choice, so `n` stays 1).
using GenerationParams = engine::SamplingParams;

struct TokenLogprob {
  int32_t token_id = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // best first
};

enum class FinishReason { kStop, kLength, kAbort, kError };

struct GenerationEvent {
  std::vector<int32_t> token_ids;      // new tokens since the last event
  std::vector<TokenLogprob> logprobs;  // one per new token, when asked for
  std::optional<FinishReason> finish;  // set on the last event
  std::string error;                   // with FinishReason::kError
  int32_t num_prompt_tokens = 0;
  int32_t num_cached_prompt_tokens = 0;  // prompt tokens served from the prefix cache
};

using EventCallback = std::function<void(GenerationEvent)>;

class GenerationHandle {
 public:
  virtual ~GenerationHandle() = default;
  // Stops generation and frees its KV blocks; the callback then gets a kAbort event (if not already finished).
  // Only enqueues the abort, so it is safe from any thread, the engine callback included.
  virtual void abort() = 0;
};

struct GeneratorStats {
  int64_t kv_capacity_tokens = 0;
  int64_t num_kv_blocks = 0;
  int64_t num_kv_blocks_in_use = 0;
  int64_t num_running = 0;
  int64_t num_waiting = 0;
  int64_t num_preemptions = 0;
  std::string failure;  // non-empty once the engine has failed (a device fault): it serves nothing more
};

class Generator {
 public:
  virtual ~Generator() = default;
  // The callback runs on the engine's thread: it must be quick and must not call back into the generator.
  // media: the prompt's preprocessed images and videos, their pad runs already expanded in prompt_ids (null: text).
  virtual absl::StatusOr<std::unique_ptr<GenerationHandle>> submit(
      std::vector<int32_t> prompt_ids, const GenerationParams& params, EventCallback on_event,
      std::shared_ptr<const engine::PromptMedia> media) = 0;
  // OK when submit takes media; otherwise why not, in a sentence (the API answers image parts with a 400 saying it).
  virtual absl::Status media_support() const { return absl::FailedPreconditionError("the model takes text only"); }
  virtual GeneratorStats stats() const = 0;
  virtual int32_t max_model_len() const = 0;
  virtual int32_t max_num_seqs() const = 0;
  // Unloads now, from the calling thread: requests in flight end with FinishReason abort, their callbacks run
  // before it returns, and later submits fail with UNAVAILABLE. The generator itself may live on (sessions that
  // still hold their model), holding nothing. Not from inside an output callback.
  virtual void shutdown() {}
};

}  // namespace bm::daemon::serving
