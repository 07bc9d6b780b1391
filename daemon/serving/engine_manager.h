#pragma once
// Owns the loaded engines: serves a model (resolve its folder, pick the backend and GPUs, load tokenizer,
// template and engine, with progress), stops one, lists them, and persists what is served in the state dir so
// that a restarted daemon serves the same models again.
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/serving/served_model.h"
#include "daemon/serving/served_state.h"

namespace bm::daemon::serving {

struct ServeProgress {
  std::string phase;  // resolving | reading weights | allocating KV cache | ready
  std::string message;
  double fraction = -1;
};
using ProgressCallback = std::function<void(const ServeProgress&)>;

// A loaded model folder, as the adapter hands it back.
struct LoadedEngine {
  std::shared_ptr<const engine::Tokenizer> tokenizer;
  std::shared_ptr<const engine::ChatTemplate> chat_template;
  std::unique_ptr<Generator> generator;
  SamplingDefaults defaults;
  std::string backend;
  std::string quantization;       // CausalLMInfo::quantization
  int64_t weight_bytes = 0;       // over all ranks
  int64_t kv_cache_bytes = 0;     // over all ranks
  std::vector<RankMemory> ranks;  // per tensor-parallel rank (GPU -1: the manager fills in its claimed GPUs)
  // preprocessor_config.json of a model that takes media (ResolvedModel::modality not "T"); null otherwise.
  std::shared_ptr<const engine::vision::ProcessorConfig> processor_config;
};

// Where a served name comes from (catalog facts and the snapshot folder).
struct ResolvedModel {
  std::string name;
  std::string repo_id;
  std::string path;
  std::string modality = "T";
  std::string tool_call_format = "none";
  std::string reasoning_format = "none";
};

// The two engine-facing steps, implemented in engine_adapter.cpp over the engine library (and replaceable in
// tests).
struct EngineFactory {
  std::function<absl::StatusOr<ResolvedModel>(const std::string& name, const ServeSettings&)> resolve;
  std::function<absl::StatusOr<LoadedEngine>(const ResolvedModel&, const ServeSettings&, const ProgressCallback&)> load;
  // What load would do, from the files alone (files, backend and GPU, weights, KV budget and capacity), as lines
  // of text; reads no weights. Unset: planning is refused.
  std::function<absl::StatusOr<std::string>(const ResolvedModel&, const ServeSettings&)> plan;
};
EngineFactory default_engine_factory();

// Opens and closes the listener of a model served with --host/--port (daemon/openai/model_listeners.h).
struct ListenerHooks {
  std::function<absl::Status(const std::shared_ptr<ServedModel>&)> open;
  std::function<void(const std::string& name)> close;
};

class EngineManager {
 public:
  EngineManager(std::string state_dir, ModelRegistry& registry, EngineFactory factory, int num_gpus);
  ~EngineManager();

  absl::StatusOr<std::shared_ptr<ServedModel>> serve(const ServeCommand& command, const ProgressCallback& progress);
  absl::StatusOr<std::shared_ptr<ServedModel>> stop(const std::string& name);
  // `chat serve --check`: the same checks and choices as serve (settings, model, GPUs), then the factory's plan;
  // loads, claims and persists nothing.
  absl::StatusOr<std::string> plan(const ServeCommand& command) const;
  std::vector<std::shared_ptr<ServedModel>> list() const { return registry_.list(); }
  bool is_served(const std::string& name_or_repo_id) const { return registry_.find(name_or_repo_id) != nullptr; }

  // Serves again what the state dir says was served, each in the background. A model that fails to come back
  // stays listed as failed (with the reason) until it is stopped; a state file that cannot be read as a list of
  // served models is moved aside as served.json.corrupt-<time> and nothing is restored.
  void restore();
  // Set before restore(): a model with settings.listen_port gets its listener while it loads (so a port that is
  // taken fails the serve before the weights are read) and loses it when it stops or fails.
  void set_listener_hooks(ListenerHooks hooks) { listener_hooks_ = std::move(hooks); }
  // The models restore() is still bringing back (empty once each is ready or has failed): the daemon says READY=1
  // to systemd only then.
  std::vector<std::string> restoring_names() const;
  // Returns once every model restore() started is ready or failed.
  void wait_for_restore();
  // Daemon shutdown: unloads every engine (aborting its requests) but keeps the state file as it is, so the
  // next start serves the same models.
  void shutdown();
  std::string state_file() const;

 private:
  // Everything that reaches the factory is caught here, so a throwing load fails its own model only.
  // restore_index: the model is entry N of the state file being restored; a failure then keeps it listed as
  // failed instead of forgetting it.
  absl::StatusOr<std::shared_ptr<ServedModel>> serve_or_fail(const ServeCommand& command,
                                                             const ProgressCallback& progress,
                                                             std::optional<size_t> restore_index);
  void keep_failed(const std::shared_ptr<ServedModel>& model, const ServeCommand& command, size_t restore_index,
                   const absl::Status& status);
  absl::Status persist() const;
  void set_aside_corrupt_state(const std::string& reason) const;
  // The GPUs a model will run on (none for the CPU backend, or for `auto` when every GPU is held), recorded as
  // its claim; RESOURCE_EXHAUSTED when a GPU it needs is held by another model.
  absl::StatusOr<std::vector<int32_t>> claim_gpus(const std::string& name, const ServeSettings& settings);
  const std::string* holder_of(int32_t gpu) const;                                      // mutex_ held
  absl::StatusOr<std::vector<int32_t>> pick_gpus(const ServeSettings& settings) const;  // mutex_ held
  void release_gpus(const std::string& name);

  std::string state_dir_;
  ModelRegistry& registry_;
  EngineFactory factory_;
  int num_gpus_ = 0;
  mutable std::mutex mutex_;
  std::map<std::string, std::vector<int32_t>> gpu_claims_;  // model name → GPUs it holds
  std::map<std::string, ServeCommand> commands_;            // what to restore, by served name
  std::map<size_t, ServeCommand> restoring_;                // from the state file, not yet back (or failed)
  mutable std::mutex persist_mutex_;                        // one snapshot-and-write at a time, in order
  ListenerHooks listener_hooks_;
  std::vector<std::thread> restore_threads_;
};

}  // namespace bm::daemon::serving
