#pragma once
// One model the daemon serves: what it is (catalog facts), how to turn chat into tokens (tokenizer, template),
// the engine behind it (a Generator), its options, state and metrics.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "daemon/openai/metrics.h"
#include "daemon/serving/generator.h"
#include "daemon/serving/media_options.h"

namespace bm::engine {
class Tokenizer;
class ChatTemplate;
namespace vision {
struct ProcessorConfig;
}
}  // namespace bm::engine

namespace bm::daemon::serving {

// Sampling defaults from generation_config.json, used where a request leaves a field unset (as vLLM's
// --generation-config auto does).
struct SamplingDefaults {
  float temperature = 1.0f;
  float top_p = 1.0f;
  int32_t top_k = -1;
  float repetition_penalty = 1.0f;
};

// One tensor-parallel rank of a served model: where it runs and what its device holds.
struct RankMemory {
  int32_t rank = 0;
  int32_t gpu = -1;  // the GPU index; -1 for a CPU rank
  int64_t weight_bytes = 0;
  int64_t kv_cache_bytes = 0;
};

struct ServeSettings {
  std::string hub;
  std::string local_dir;
  std::string backend = "auto";  // auto | cuda | cpu
  std::vector<int32_t> gpus;
  int32_t max_model_len = 0;
  double gpu_memory_utilization = 0.9;
  int32_t max_num_seqs = 256;
  int32_t max_num_batched_tokens = 0;
  uint64_t seed = 2025;
  std::string api_key;
  uint64_t kv_cache_bytes = 0;
  bool enforce_eager = false;           // no decode graphs
  int32_t threads = 0;                  // cpu backend threads; 0: every CPU of the daemon's affinity mask
  std::string kv_cache_dtype = "auto";  // auto | bfloat16 | float32 (normalised by serve_settings_from_proto)
  int32_t tensor_parallel_size = 1;     // ranks the model is split over
  bool enable_prefix_caching = true;
  // The original's `chat serve --host H --port P`: a listener of its own for this model (the daemon's main
  // listener serves it too). Port 0: none.
  std::string listen_host;
  int32_t listen_port = 0;
  // Media (vLLM's flags; daemon/serving/media_options.h parses them): a JSON object of items per prompt by modality,
  // a JSON object of processor overrides, the folder local media may come from, the hosts http(s) media may come
  // from (comma-separated). Empty: the defaults (999 each, the processor's own sizes, no files, no URLs).
  std::string limit_mm_per_prompt;
  std::string mm_processor_kwargs;
  std::string allowed_local_media_path;
  std::string allowed_media_domains;
  std::string extra_params;  // the original's --extra-params as typed (the CLI mapped them onto the fields above)
  // Where-the-models-are variables the serving command brought (HF_HUB_CACHE, HF_HOME, MODELSCOPE_CACHE, ...):
  // over the daemon's own when the model is resolved, now and after a restart.
  std::map<std::string, std::string> env;
};

enum class ModelState { kLoading, kReady, kFailed };

class ServedModel {
 public:
  // Identity: the catalog name (or folder name) and the repo id both address it.
  std::string name;
  std::string repo_id;
  std::string path;                       // snapshot folder
  std::string modality = "T";             // "T" or "T&I+&V+"
  std::string tool_call_format = "none";  // none | hermes
  std::string reasoning_format = "none";  // none | deepseek-r1
  ServeSettings settings;
  std::string backend;  // the backend actually used
  std::chrono::steady_clock::time_point started_at = std::chrono::steady_clock::now();

  std::shared_ptr<const engine::Tokenizer> tokenizer;
  std::shared_ptr<const engine::ChatTemplate> chat_template;
  std::unique_ptr<Generator> generator;
  SamplingDefaults defaults;
  std::vector<int32_t> eos_token_ids;
  int64_t weight_bytes = 0;    // over all ranks
  int64_t kv_cache_bytes = 0;  // over all ranks
  // Each tensor-parallel rank's device and memory (one entry for one rank): `chat ps` shows them.
  std::vector<RankMemory> ranks;
  std::string quantization;  // "gptq-int4", ...; empty for float weights
  // Media: the settings parsed (media_options.h), and the folder's preprocessor_config.json — null for a text-only
  // model, or a media model whose folder has none (its media requests are refused with a sentence saying so).
  MediaOptions media;
  std::shared_ptr<const engine::vision::ProcessorConfig> processor_config;
  openai::ModelMetrics metrics;

  ModelState state() const { return state_.load(); }
  std::string error() const;
  void set_ready() { state_ = ModelState::kReady; }
  void set_failed(std::string error);
  bool answers_to(const std::string& id) const { return id == name || id == repo_id; }

  // Sequences of HTTP requests admitted and not yet ended (running or waiting in the engine).
  std::atomic<int64_t> admitted_seqs{0};

 private:
  std::atomic<ModelState> state_{ModelState::kLoading};
  mutable std::mutex error_mutex_;
  std::string error_;
};

// A request's place in its model's queue: taken for all its sequences at once, given back when the last of
// them has ended (the holder is the request's session, which lives until its last engine event).
class Admission {
 public:
  // Null when admitting `num_seqs` more would pass `limit` sequences in flight for the model.
  static std::unique_ptr<Admission> try_admit(std::shared_ptr<ServedModel> model, int64_t num_seqs, int64_t limit);
  ~Admission();
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

 private:
  Admission(std::shared_ptr<ServedModel> model, int64_t num_seqs) : model_(std::move(model)), num_seqs_(num_seqs) {}
  std::shared_ptr<ServedModel> model_;
  int64_t num_seqs_;
};

// The served models, by name and repo id; shared by the gRPC Serving service and the HTTP API.
class ModelRegistry {
 public:
  std::shared_ptr<ServedModel> find(const std::string& name_or_repo_id) const;
  std::vector<std::shared_ptr<ServedModel>> list() const;
  void add(std::shared_ptr<ServedModel> model);
  std::shared_ptr<ServedModel> remove(const std::string& name_or_repo_id);

 private:
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<ServedModel>> models_;
};

}  // namespace bm::daemon::serving
