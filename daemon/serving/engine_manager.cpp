#include "daemon/serving/engine_manager.h"

#include <filesystem>
#include <fstream>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace bm::daemon::serving {
namespace {

using json = nlohmann::json;

json settings_to_json(const ServeSettings& s) {
  return {{"hub", s.hub},
          {"local_dir", s.local_dir},
          {"backend", s.backend},
          {"gpus", s.gpus},
          {"max_model_len", s.max_model_len},
          {"gpu_memory_utilization", s.gpu_memory_utilization},
          {"max_num_seqs", s.max_num_seqs},
          {"max_num_batched_tokens", s.max_num_batched_tokens},
          {"seed", s.seed},
          {"api_key", s.api_key},
          {"kv_cache_bytes", s.kv_cache_bytes},
          {"enforce_eager", s.enforce_eager}};
}

ServeSettings settings_from_json(const json& j) {
  ServeSettings s;
  s.hub = j.value("hub", "");
  s.local_dir = j.value("local_dir", "");
  s.backend = j.value("backend", "auto");
  s.gpus = j.value("gpus", std::vector<int32_t>{});
  s.max_model_len = j.value("max_model_len", 0);
  s.gpu_memory_utilization = j.value("gpu_memory_utilization", 0.9);
  s.max_num_seqs = j.value("max_num_seqs", 256);
  s.max_num_batched_tokens = j.value("max_num_batched_tokens", 0);
  s.seed = j.value("seed", uint64_t{2025});
  s.api_key = j.value("api_key", "");
  s.kv_cache_bytes = j.value("kv_cache_bytes", uint64_t{0});
  s.enforce_eager = j.value("enforce_eager", false);
  return s;
}

}  // namespace

EngineManager::EngineManager(std::string state_dir, ModelRegistry& registry, EngineFactory factory, int num_gpus)
    : state_dir_(std::move(state_dir)), registry_(registry), factory_(std::move(factory)), num_gpus_(num_gpus) {}

EngineManager::~EngineManager() {
  shutdown();
}

void EngineManager::shutdown() {
  for (std::thread& t : restore_threads_)
    if (t.joinable()) t.join();
  restore_threads_.clear();
  for (const auto& model : registry_.list()) {
    registry_.remove(model->name);
    if (model->generator) model->generator->shutdown();
    release_gpus(model->name);
  }
}

std::string EngineManager::state_file() const {
  return (std::filesystem::path(state_dir_) / "served.json").string();
}

absl::Status EngineManager::persist() const {
  json served = json::array();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [name, command] : commands_)
      served.push_back({{"name", command.name}, {"settings", settings_to_json(command.settings)}});
  }
  // Written through a temp file and a rename, so a crash never leaves a half-written state file.
  std::string path = state_file();
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return absl::InternalError("cannot write " + tmp);
    out << json{{"version", 1}, {"served", served}}.dump(2) << "\n";
    out.flush();
    if (!out) return absl::InternalError("cannot write " + tmp + " (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::InternalError("cannot replace " + path + ": " + ec.message());
  return absl::OkStatus();
}

const std::string* EngineManager::holder_of(int32_t gpu) const {
  for (const auto& [holder, held] : gpu_claims_)
    if (std::find(held.begin(), held.end(), gpu) != held.end()) return &holder;
  return nullptr;
}

absl::StatusOr<std::vector<int32_t>> EngineManager::claim_gpus(const std::string& name, const ServeSettings& settings) {
  if (settings.backend == "cpu") return std::vector<int32_t>{};
  // Choosing and claiming under one lock: models restored in parallel after a restart must not pick the same GPU.
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<int32_t> gpus = settings.gpus;
  if (gpus.empty()) {
    for (int32_t g = 0; g < num_gpus_ && gpus.empty(); ++g)
      if (holder_of(g) == nullptr) gpus.push_back(g);
    if (gpus.empty() && settings.backend == "cuda" && num_gpus_ > 0)
      return absl::ResourceExhaustedError(
          absl::StrCat("every GPU this daemon sees (", num_gpus_,
                       ") is held by another served model; stop one first (bmserver chat ps)"));
  }
  for (int32_t g : gpus)
    if (const std::string* holder = holder_of(g))
      return absl::ResourceExhaustedError(absl::StrCat("GPU ", g, " is held by the engine serving '", *holder,
                                                       "'; stop it first (bmserver chat stop ", *holder,
                                                       ") or pick other GPUs with --gpus"));
  if (!gpus.empty()) gpu_claims_[name] = gpus;
  return gpus;
}

void EngineManager::release_gpus(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  gpu_claims_.erase(name);
}

absl::StatusOr<std::shared_ptr<ServedModel>> EngineManager::serve(const ServeCommand& command,
                                                                  const ProgressCallback& progress) {
  progress({"resolving", "looking up " + command.name, -1});
  absl::StatusOr<ResolvedModel> resolved = factory_.resolve(command.name, command.settings);
  if (!resolved.ok()) return resolved.status();
  if (std::shared_ptr<ServedModel> existing = registry_.find(resolved->name); existing)
    return absl::AlreadyExistsError(absl::StrCat(
        "'", resolved->name, "' is already served; stop it first (bmserver chat stop ", resolved->name, ")"));
  for (int32_t g : command.settings.gpus)
    if (g < 0 || g >= num_gpus_)
      return absl::InvalidArgumentError(
          absl::StrCat("--gpus ", g, " is not a GPU this daemon sees (it sees ", num_gpus_, ")"));

  auto model = std::make_shared<ServedModel>();
  model->name = resolved->name;
  model->repo_id = resolved->repo_id;
  model->path = resolved->path;
  model->modality = resolved->modality;
  model->tool_call_format = resolved->tool_call_format;
  model->reasoning_format = resolved->reasoning_format;
  model->settings = command.settings;
  registry_.add(model);  // visible as loading: /health answers 503 until it is ready

  auto fail = [&](const absl::Status& status) {
    registry_.remove(model->name);
    release_gpus(model->name);
    return status;
  };
  // A model runs on one GPU until tensor parallelism lands: the one --gpus names, else the first free one.
  if (command.settings.gpus.size() > 1)
    return fail(absl::UnimplementedError(
        absl::StrCat("--gpus names ", command.settings.gpus.size(),
                     " GPUs, but tensor parallelism across GPUs is not implemented yet; serve on one "
                     "GPU (--gpus N)")));
  absl::StatusOr<std::vector<int32_t>> gpus = claim_gpus(model->name, command.settings);
  if (!gpus.ok()) return fail(gpus.status());

  ServeSettings settings = command.settings;
  settings.gpus = *gpus;  // the adapter loads onto exactly these
  absl::StatusOr<LoadedEngine> loaded = factory_.load(*resolved, settings, progress);
  if (!loaded.ok()) return fail(loaded.status());
  if (loaded->backend == "cpu") release_gpus(model->name);
  model->tokenizer = std::move(loaded->tokenizer);
  model->chat_template = std::move(loaded->chat_template);
  model->generator = std::move(loaded->generator);
  model->defaults = loaded->defaults;
  model->backend = loaded->backend;
  model->weight_bytes = loaded->weight_bytes;
  model->quantization = loaded->quantization;
  model->kv_cache_bytes = loaded->kv_cache_bytes;
  if (loaded->backend != "cpu") model->settings.gpus = *gpus;
  model->started_at = std::chrono::steady_clock::now();
  model->set_ready();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    commands_[model->name] = command;
  }
  if (absl::Status s = persist(); !s.ok())
    spdlog::warn("could not persist served models: {}", std::string(s.message()));
  spdlog::info("serving {} from {} on the {} backend", model->name, model->path, model->backend);
  return model;
}

absl::StatusOr<std::shared_ptr<ServedModel>> EngineManager::stop(const std::string& name) {
  std::shared_ptr<ServedModel> model = registry_.find(name);
  if (!model) {
    std::vector<std::string> names;
    for (const auto& m : registry_.list()) names.push_back(m->name);
    return absl::NotFoundError(
        absl::StrCat("'", name, "' is not served (served: ", names.empty() ? "none" : absl::StrJoin(names, ", "), ")"));
  }
  if (model->state() == ModelState::kLoading)
    return absl::UnavailableError(absl::StrCat("'", model->name, "' is still loading; stop it once it is ready"));
  registry_.remove(model->name);
  // Unload now, not when the last session lets go of the model: requests in flight end with `abort` and the
  // memory is free when this returns.
  if (model->generator) model->generator->shutdown();
  release_gpus(model->name);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    commands_.erase(model->name);
  }
  if (absl::Status s = persist(); !s.ok())
    spdlog::warn("could not persist served models: {}", std::string(s.message()));
  spdlog::info("stopped {}", model->name);
  return model;
}

void EngineManager::restore() {
  std::ifstream in(state_file());
  if (!in) return;
  json state = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (state.is_discarded() || !state.contains("served") || !state["served"].is_array()) {
    spdlog::error("{} is not a valid served-models file; nothing restored", state_file());
    return;
  }
  for (const json& entry : state["served"]) {
    if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string()) continue;
    ServeCommand command{entry["name"].get<std::string>(), settings_from_json(entry.value("settings", json::object()))};
    {
      // Remember it even if loading fails now, so a later restart tries again.
      std::lock_guard<std::mutex> lock(mutex_);
      commands_[command.name] = command;
    }
    restore_threads_.emplace_back([this, command] {
      absl::StatusOr<std::shared_ptr<ServedModel>> served = serve(command, [](const ServeProgress&) {});
      if (!served.ok())
        spdlog::error("could not serve {} again after restart: {}", command.name,
                      std::string(served.status().message()));
    });
  }
}

}  // namespace bm::daemon::serving
