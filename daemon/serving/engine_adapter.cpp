// The engine-facing half of serving: resolve a served name to a model folder with its catalog facts, and load
// tokenizer, chat template and engine for it.
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/catalog/catalog.h"
#include "common/store/model_store.h"
#include "common/store/store_roots.h"
#include "daemon/serving/engine_manager.h"
#include "engine/backend/cuda_plugin.h"
#include "engine/runtime/engine.h"
#include "engine/template/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace bm::daemon::serving {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A model folder given directly: its facts come from its files (the template shows the tool-call and
// reasoning formats the model was trained with).
absl::StatusOr<ResolvedModel> resolve_folder(const fs::path& folder) {
  std::error_code ec;
  if (!fs::exists(folder / "config.json", ec))
    return absl::NotFoundError(absl::StrCat(folder.string(), " holds no config.json, so it is not a model folder"));
  ResolvedModel model;
  model.name = folder.filename().string();
  model.repo_id = model.name;
  model.path = fs::canonical(folder, ec).string();
  std::ifstream in(folder / "tokenizer_config.json");
  json tok = json::parse(in, nullptr, false);
  std::string templ = tok.is_object() && tok.contains("chat_template") && tok["chat_template"].is_string()
                          ? tok["chat_template"].get<std::string>()
                          : "";
  if (templ.find("<tool_call>") != std::string::npos) model.tool_call_format = "hermes";
  if (templ.find("<think>") != std::string::npos) model.reasoning_format = "deepseek-r1";
  return model;
}

// Catalog names close to an unknown one: same series or sharing a prefix, for the error message.
std::string close_names(const std::string& name) {
  std::vector<std::string> close;
  for (const common::CatalogEntry& e : common::catalog()) {
    size_t common_prefix = 0;
    while (common_prefix < name.size() && common_prefix < e.name.size() && name[common_prefix] == e.name[common_prefix])
      ++common_prefix;
    if (common_prefix >= std::min<size_t>(8, name.size())) close.push_back(e.name);
  }
  if (close.size() > 6) close.resize(6);
  return close.empty() ? "see `bmserver chat search`" : "close names: " + absl::StrJoin(close, ", ");
}

absl::StatusOr<ResolvedModel> resolve_catalog_name(const std::string& name, const ServeSettings& settings) {
  const common::CatalogEntry* entry = common::find_catalog_entry(name);
  if (entry == nullptr)
    return absl::NotFoundError(
        absl::StrCat("'", name, "' is not a catalog model or a model folder (", close_names(name), ")"));
  common::StoreRoots roots = common::resolve_store_roots();
  absl::StatusOr<std::unique_ptr<common::ModelStore>> store =
      common::open_model_store(settings.hub, settings.local_dir, roots);
  if (!store.ok()) return store.status();
  std::string hub = settings.hub.empty() ? roots.default_hub : settings.hub;
  const std::string& repo_id = hub == "ms" ? entry->ms_repo_id : entry->hf_repo_id;
  std::optional<common::StoredModel> stored = (*store)->find(repo_id);
  std::string download = absl::StrCat("bmserver chat download ", name,
                                      settings.local_dir.empty() ? "" : " --local-dir " + settings.local_dir,
                                      settings.hub.empty() ? "" : " --hub " + settings.hub);
  if (!stored)
    return absl::NotFoundError(
        absl::StrCat(repo_id, " is not downloaded in ", (*store)->root(), "; run `", download, "`"));
  if (stored->state != common::StoredState::kDownloaded || stored->snapshot_path.empty())
    return absl::FailedPreconditionError(absl::StrCat(repo_id, " in ", stored->repo_path, " is ",
                                                      std::string(common::stored_state_name(stored->state)), ": ",
                                                      stored->reason, "; run `", download, "` to complete it"));
  ResolvedModel model;
  model.name = entry->name;
  model.repo_id = repo_id;
  model.path = stored->snapshot_path;
  model.modality = entry->modality;
  model.tool_call_format = entry->tool_call;
  model.reasoning_format = entry->reasoning;
  return model;
}

absl::StatusOr<ResolvedModel> resolve(const std::string& name, const ServeSettings& settings) {
  fs::path as_path(name);
  if (as_path.is_absolute() || name.rfind("./", 0) == 0 || name.rfind("../", 0) == 0) return resolve_folder(as_path);
  return resolve_catalog_name(name, settings);
}

// The OpenAI layer's Generator over an engine::Engine: converts parameters in and outputs out.
//
// Who destroys the engine matters: its destructor joins the engine thread, so it must not run on that thread. A
// session keeps its served model (and so this generator) alive until its last output, which arrives on the engine
// thread; once the model was stopped, that session may be the last owner. So `chat stop` shuts the engine down
// from the stopping thread (shutdown()), and should the last owner still let go on the engine thread, the engine
// is handed to another thread to end.
class EngineGenerator final : public Generator {
 public:
  explicit EngineGenerator(std::unique_ptr<engine::Engine> engine)
      : max_model_len_(engine->max_model_len()),
        max_num_seqs_(engine->max_num_seqs()),
        kv_capacity_tokens_(engine->stats().kv_capacity_tokens),
        engine_(std::move(engine)) {}

  ~EngineGenerator() override {
    if (engine_ != nullptr && engine_->on_engine_thread())
      std::thread([engine = std::move(engine_)]() mutable { engine.reset(); }).detach();
  }

  absl::StatusOr<std::unique_ptr<GenerationHandle>> submit(std::vector<int32_t> prompt_ids,
                                                           const GenerationParams& params,
                                                           EventCallback on_event) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (engine_ == nullptr) return absl::UnavailableError("the model was stopped");
    absl::StatusOr<std::unique_ptr<engine::RequestHandle>> handle = engine_->submit(
        std::move(prompt_ids), to_sampling_params(params),
        [on_event = std::move(on_event)](engine::SequenceOutput out) { on_event(to_event(std::move(out))); });
    if (!handle.ok()) return handle.status();
    return std::unique_ptr<GenerationHandle>(new Handle(*std::move(handle)));
  }

  GeneratorStats stats() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (engine_ == nullptr) return GeneratorStats{kv_capacity_tokens_, 0, 0, 0, 0, 0, "stopped"};
    engine::EngineStats s = engine_->stats();
    return GeneratorStats{s.kv_capacity_tokens, s.num_kv_blocks, s.num_kv_blocks_in_use, s.num_running, s.num_waiting,
                          s.num_preemptions,    s.failure};
  }
  int32_t max_model_len() const override { return max_model_len_; }
  int32_t max_num_seqs() const override { return max_num_seqs_; }

  void shutdown() override {
    std::unique_ptr<engine::Engine> engine;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      engine = std::move(engine_);
    }
    engine.reset();  // outside the lock: the aborted requests' callbacks may call submit (and are refused)
  }

 private:
  const int32_t max_model_len_;
  const int32_t max_num_seqs_;
  const int64_t kv_capacity_tokens_;
  mutable std::mutex mutex_;  // guards engine_ against a concurrent shutdown
  std::unique_ptr<engine::Engine> engine_;

  class Handle final : public GenerationHandle {
   public:
    explicit Handle(std::unique_ptr<engine::RequestHandle> handle) : handle_(std::move(handle)) {}
    void abort() override { handle_->abort(); }

   private:
    std::unique_ptr<engine::RequestHandle> handle_;
  };

  static engine::SamplingParams to_sampling_params(const GenerationParams& p) {
    engine::SamplingParams s;
    s.max_tokens = p.max_tokens;
    s.min_tokens = p.min_tokens;
    s.temperature = p.temperature;
    s.top_p = p.top_p;
    s.top_k = p.top_k;
    s.min_p = p.min_p;
    s.presence_penalty = p.presence_penalty;
    s.frequency_penalty = p.frequency_penalty;
    s.repetition_penalty = p.repetition_penalty;
    s.logit_bias.assign(p.logit_bias.begin(), p.logit_bias.end());
    s.seed = p.seed;
    s.stop_token_ids = p.stop_token_ids;
    s.ignore_eos = p.ignore_eos;
    s.logprobs = p.logprobs;
    return s;
  }

  static GenerationEvent to_event(engine::SequenceOutput out) {
    GenerationEvent e;
    e.token_ids = std::move(out.new_token_ids);
    for (engine::TokenLogprob& lp : out.logprobs)
      e.logprobs.push_back(TokenLogprob{lp.token_id, lp.logprob, std::move(lp.top)});
    if (out.finish) {
      switch (*out.finish) {
        case engine::FinishReason::kStop:
          e.finish = FinishReason::kStop;
          break;
        case engine::FinishReason::kLength:
          e.finish = FinishReason::kLength;
          break;
        case engine::FinishReason::kAbort:
          e.finish = FinishReason::kAbort;
          break;
        case engine::FinishReason::kError:
          e.finish = FinishReason::kError;
          break;
      }
    }
    e.error = std::move(out.error);
    e.num_prompt_tokens = out.num_prompt_tokens;
    e.num_cached_prompt_tokens = out.num_cached_prompt_tokens;
    return e;
  }
};

SamplingDefaults sampling_defaults(const engine::GenerationConfig& g) {
  SamplingDefaults d;
  if (g.temperature) d.temperature = *g.temperature;
  if (g.top_p) d.top_p = *g.top_p;
  if (g.top_k) d.top_k = *g.top_k > 0 ? *g.top_k : -1;
  if (g.repetition_penalty) d.repetition_penalty = *g.repetition_penalty;
  return d;
}

engine::EngineOptions engine_options(const ServeSettings& settings, const std::string& model_path,
                                     const std::string& backend, const ProgressCallback& progress) {
  engine::EngineOptions o;
  o.backend = backend;
  o.device_index = settings.gpus.empty() ? 0 : settings.gpus.front();  // the engine manager picked it
  o.max_model_len = settings.max_model_len;
  o.max_num_seqs = settings.max_num_seqs;
  o.max_num_batched_tokens = settings.max_num_batched_tokens;
  o.kv_cache_bytes = static_cast<int64_t>(settings.kv_cache_bytes);
  o.gpu_memory_utilization = settings.gpu_memory_utilization;
  o.seed = settings.seed;
  o.enable_prefix_caching = settings.enable_prefix_caching;
  if (settings.enforce_eager) o.decode_graphs = engine::DecodeGraphMode::kOff;
  o.on_progress = [progress, model_path, backend](const std::string& phase, double fraction) {
    progress(
        {phase,
         phase == "reading weights" ? "safetensors from " + model_path + " onto the " + backend + " backend" : phase,
         fraction});
  };
  return o;
}

// auto: the GPU when the daemon sees one and the CUDA backend loads on it, the CPU otherwise (as Ollama does);
// cuda: the GPU or an error; cpu: the CPU.
absl::StatusOr<std::unique_ptr<engine::Engine>> load_engine(const ResolvedModel& model, const ServeSettings& settings,
                                                            const ProgressCallback& progress, std::string& backend) {
  if (settings.backend != "auto") {
    backend = settings.backend;
    return engine::Engine::load(model.path, engine_options(settings, model.path, backend, progress));
  }
  // The engine manager (which counted the GPUs at start-up) hands auto a GPU when one is free; none means there
  // is no GPU, or every one is taken: the CPU.
  if (!settings.gpus.empty()) {
    backend = "cuda";
    absl::StatusOr<std::unique_ptr<engine::Engine>> on_gpu =
        engine::Engine::load(model.path, engine_options(settings, model.path, backend, progress));
    // Only a backend that cannot start here falls back; a model that does not fit the GPU, or that no backend
    // supports, is reported as such.
    if (on_gpu.ok() || !engine::is_backend_unavailable(on_gpu.status())) return on_gpu;
    progress({"falling back",
              absl::StrCat("the CUDA backend is not available (", on_gpu.status().message(), "); using the CPU"), -1});
  }
  backend = "cpu";
  return engine::Engine::load(model.path, engine_options(settings, model.path, backend, progress));
}

absl::StatusOr<LoadedEngine> load(const ResolvedModel& model, const ServeSettings& settings,
                                  const ProgressCallback& progress) {
  progress({"reading tokenizer", "tokenizer and chat template of " + model.path, -1});
  absl::StatusOr<std::unique_ptr<engine::Tokenizer>> tokenizer = engine::Tokenizer::load(model.path);
  if (!tokenizer.ok()) return tokenizer.status();
  absl::StatusOr<engine::ChatTemplate> chat_template = engine::ChatTemplate::load(model.path);
  if (!chat_template.ok()) return chat_template.status();
  std::string backend;
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = load_engine(model, settings, progress, backend);
  if (!engine.ok()) return engine.status();
  LoadedEngine loaded;
  loaded.tokenizer = std::shared_ptr<const engine::Tokenizer>(*std::move(tokenizer));
  loaded.chat_template = std::make_shared<const engine::ChatTemplate>(*std::move(chat_template));
  loaded.defaults = sampling_defaults((*engine)->generation_config());
  loaded.backend = (*engine)->backend_name();
  loaded.weight_bytes = (*engine)->model_info().weight_bytes;
  loaded.kv_cache_bytes = (*engine)->kv_cache_bytes();
  engine::EngineStats stats = (*engine)->stats();
  progress({"allocated",
            absl::StrCat("KV cache ", stats.kv_capacity_tokens, " tokens (", stats.num_kv_blocks, " blocks), context ",
                         (*engine)->max_model_len(), " tokens, up to ", (*engine)->max_num_seqs(), " sequences"),
            1.0});
  loaded.generator = std::make_unique<EngineGenerator>(*std::move(engine));
  return loaded;
}

}  // namespace

EngineFactory default_engine_factory() {
  return EngineFactory{resolve, load};
}

}  // namespace bm::daemon::serving
