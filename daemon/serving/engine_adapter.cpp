// The engine-facing half of serving: resolve a served name to a model folder with its catalog facts, and load
// tokenizer, chat template and engine for it.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/catalog/catalog.h"
#include "common/command_env.h"
#include "common/size_format.h"
#include "common/store/model_store.h"
#include "common/store/store_roots.h"
#include "daemon/serving/engine_manager.h"
#include "engine/backend/cuda_plugin.h"
#include "engine/backend/device_info.h"
#include "engine/model/model_config.h"
#include "engine/runtime/engine.h"
#include "engine/template/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/vision/processor_config.h"

namespace bm::daemon::serving {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The one architecture whose checkpoints hold a vision tower, and the catalog's modality for it.
constexpr std::string_view kMediaArchitecture = "Qwen2_5_VLForConditionalGeneration";
constexpr std::string_view kMediaModality = "T&I+&V+";

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
  // The architecture says whether the model takes images and videos, with the catalog's spelling of it.
  std::ifstream config_in(folder / "config.json");
  json config = json::parse(config_in, nullptr, false);
  if (config.is_object() && config.contains("architectures") && config["architectures"].is_array())
    for (const json& a : config["architectures"])
      if (a.is_string() && a.get<std::string>() == kMediaArchitecture) model.modality = kMediaModality;
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
  // The store-location variables the serving command brought (kept in the settings, so a restart looks there too).
  common::StoreRoots roots = common::resolve_store_roots(common::overlay_env(settings.env));
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
                                                           const GenerationParams& params, EventCallback on_event,
                                                           std::shared_ptr<const engine::PromptMedia> media) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (engine_ == nullptr) return absl::UnavailableError("the model was stopped");
    absl::StatusOr<std::unique_ptr<engine::RequestHandle>> handle = engine_->submit(
        std::move(prompt_ids), params,
        [on_event = std::move(on_event)](engine::SequenceOutput out) { on_event(to_event(std::move(out))); },
        std::move(media));
    if (!handle.ok()) return handle.status();
    return std::unique_ptr<GenerationHandle>(new Handle(*std::move(handle)));
  }

  absl::Status media_support() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (engine_ == nullptr) return absl::UnavailableError("the model was stopped");
    return engine_->media_support();
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
  o.num_threads = settings.threads;
  o.tensor_parallel_size = settings.tensor_parallel_size;
  // Several GPUs are one tensor-parallel group (the engine manager checked that their count is the size).
  if (settings.gpus.size() > 1) o.devices.assign(settings.gpus.begin(), settings.gpus.end());
  if (settings.kv_cache_dtype == "bfloat16") o.kv_cache_dtype = engine::DType::kBF16;
  if (settings.kv_cache_dtype == "float32") o.kv_cache_dtype = engine::DType::kF32;
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
    // A tensor-parallel group the manager claimed GPUs for (libnccl missing, say) is an error, not CPU ranks at a
    // fraction of the speed asked for.
    if (settings.gpus.size() > 1) return on_gpu;
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
  // A media model's image processor settings; a folder without the file still serves text (its media requests
  // are refused with a sentence), one with a broken file is refused now rather than at its first image.
  std::shared_ptr<const engine::vision::ProcessorConfig> processor_config;
  std::error_code ec;
  if (model.modality != "T" && fs::exists(fs::path(model.path) / "preprocessor_config.json", ec)) {
    absl::StatusOr<engine::vision::ProcessorConfig> config = engine::vision::load_processor_config(model.path);
    if (!config.ok()) return config.status();
    processor_config = std::make_shared<const engine::vision::ProcessorConfig>(*config);
  }
  std::string backend;
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = load_engine(model, settings, progress, backend);
  if (!engine.ok()) return engine.status();
  LoadedEngine loaded;
  loaded.tokenizer = std::shared_ptr<const engine::Tokenizer>(*std::move(tokenizer));
  loaded.chat_template = std::make_shared<const engine::ChatTemplate>(*std::move(chat_template));
  loaded.processor_config = std::move(processor_config);
  loaded.defaults = sampling_defaults((*engine)->generation_config());
  loaded.backend = (*engine)->backend_name();
  loaded.weight_bytes = (*engine)->model_info().weight_bytes;
  loaded.quantization = (*engine)->model_info().quantization;
  loaded.kv_cache_bytes = (*engine)->kv_cache_bytes();
  const engine::CausalLMInfo& info = (*engine)->model_info();
  for (int32_t r = 0; r < info.tensor_parallel_size; ++r) {
    const int64_t weights =
        info.rank_weight_bytes.empty() ? info.weight_bytes : info.rank_weight_bytes[static_cast<size_t>(r)];
    loaded.ranks.push_back(RankMemory{r, -1, weights, (*engine)->kv_cache_bytes_per_rank()});
  }
  engine::EngineStats stats = (*engine)->stats();
  progress({"allocated",
            absl::StrCat("KV cache ", stats.kv_capacity_tokens, " tokens (", stats.num_kv_blocks, " blocks), context ",
                         (*engine)->max_model_len(), " tokens, up to ", (*engine)->max_num_seqs(), " sequences"),
            1.0});
  loaded.generator = std::make_unique<EngineGenerator>(*std::move(engine));
  return loaded;
}

int64_t host_memory_available_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return 0;
}

// `chat serve --check`: what load() would do, from config.json and the file sizes; the KV figures follow
// engine::plan_kv_cache_blocks, except that on a GPU the activations are only known after a dry run, so the
// capacity shown is an upper bound.
absl::StatusOr<std::string> plan(const ResolvedModel& model, const ServeSettings& settings) {
  constexpr int64_t kGiB = int64_t{1} << 30;
  constexpr int64_t kBlockTokens = 16;
  absl::StatusOr<engine::ModelConfig> config = engine::read_model_config(model.path);
  if (!config.ok()) return config.status();
  std::vector<std::string> names;
  int64_t total_bytes = 0, weight_bytes = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(model.path, ec)) {
    if (!entry.is_regular_file(ec)) continue;  // follows the snapshot's links into blobs/
    const int64_t size = static_cast<int64_t>(entry.file_size(ec));
    const std::string name = entry.path().filename().string();
    total_bytes += size;
    if (name.ends_with(".safetensors")) weight_bytes += size;
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  std::string out = absl::StrCat("  files      ", model.path, " (", names.size(), " files, ",
                                 common::format_size(total_bytes), "): ", absl::StrJoin(names, " "), "\n");
  const bool on_gpu = settings.backend != "cpu" && !settings.gpus.empty();
  const int64_t kv_per_token = int64_t{2} * config->num_layers * config->num_kv_heads * config->head_dim * 2;
  int64_t budget = static_cast<int64_t>(settings.kv_cache_bytes);
  std::string source = "--kv-cache-bytes";
  if (on_gpu) {
    engine::DeviceInfo devices = engine::detect_devices();
    const int32_t gpu = settings.gpus.front();
    const engine::GpuInfo* info = nullptr;
    for (const engine::GpuInfo& g : devices.gpus)
      if (g.index == gpu) info = &g;
    const bool group = settings.gpus.size() > 1;
    absl::StrAppend(
        &out, "  backend    cuda on GPU", group ? "s " : " ", absl::StrJoin(settings.gpus, ", "),
        info ? absl::StrCat(" (", info->name, ", ", common::format_size(info->memory_total_bytes), group ? " each" : "",
                            ")")
             : "",
        group ? absl::StrCat("; tensor parallel over NCCL, one rank per GPU (the figures below are the ",
                             "unsharded model's against GPU ", gpu, ")")
              : "",
        settings.backend == "auto" && !group ? "; auto falls back to the cpu backend if the CUDA plugin cannot start"
                                             : "",
        "\n");
    if (budget <= 0 && info) {
      const int64_t total = static_cast<int64_t>(info->memory_total_bytes);
      const int64_t used = total - static_cast<int64_t>(info->memory_free_bytes) + weight_bytes;
      budget = static_cast<int64_t>(static_cast<double>(total) * settings.gpu_memory_utilization) - used - kGiB / 4;
      source = absl::StrCat("--gpu-memory-utilization ", settings.gpu_memory_utilization, " of ",
                            common::format_size(total), " less ", common::format_size(used),
                            " in use with the weights and 0.25 GiB kept free, before the activations (an upper bound)");
    }
  } else {
    absl::StrAppend(&out, "  backend    cpu", settings.backend == "auto" ? " (no free GPU)" : "", "\n");
    if (budget <= 0) {
      budget = std::min(host_memory_available_bytes() / 4, 4 * kGiB);
      source = "a quarter of the available host memory, at most 4 GiB";
    }
  }
  absl::StrAppend(&out, "  weights    ", common::format_size(weight_bytes), " of safetensors",
                  config->quantization
                      ? absl::StrCat(" (", config->quantization->method, " ", config->quantization->bits, "-bit)")
                      : "",
                  config->dtype.empty() ? "" : ", dtype " + config->dtype, "\n");
  const int64_t blocks = budget > 0 ? budget / (kv_per_token * kBlockTokens) : 0;
  const int64_t capacity = blocks * kBlockTokens;
  absl::StrAppend(&out, "  KV cache   ", kv_per_token, " bytes a token (bf16, ", config->num_layers, " layers x ",
                  config->num_kv_heads, " KV heads x ", config->head_dim, "); budget ",
                  common::format_size(std::max<int64_t>(budget, 0)), " from ", source, " = ", capacity, " tokens\n");
  if (capacity == 0) absl::StrAppend(&out, "             that is no room for even one block: the serve would fail\n");
  int32_t context = settings.max_model_len > 0 ? settings.max_model_len : config->max_position_embeddings;
  if (capacity > 0 && context > capacity) context = static_cast<int32_t>(capacity);
  absl::StrAppend(&out, "  context    max model len ", context, ", up to ", settings.max_num_seqs,
                  " sequences at once, prefix caching ", settings.enable_prefix_caching ? "on" : "off",
                  settings.enforce_eager ? ", eager (no CUDA graphs)" : "", "\n");
  return out;
}

}  // namespace

EngineFactory default_engine_factory() {
  return EngineFactory{resolve, load, plan};
}

}  // namespace bm::daemon::serving
