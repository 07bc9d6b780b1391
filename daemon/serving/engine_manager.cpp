#include "daemon/serving/engine_manager.h"

#include <algorithm>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/atomic_file.h"
#include "common/identifier_checks.h"

namespace bm::daemon::serving {
namespace {

// Settings reach serve() from an RPC and from the state file; both are checked here, once.
absl::Status check_settings(const ServeCommand& command) {
  const ServeSettings& s = command.settings;
  static constexpr std::string_view kBackends[] = {"auto", "cuda", "cpu"};
  if (std::find(std::begin(kBackends), std::end(kBackends), s.backend) == std::end(kBackends))
    return absl::InvalidArgumentError(absl::StrCat("backend '", s.backend, "' is not one of auto, cuda, cpu"));
  if (!(s.gpu_memory_utilization > 0 && s.gpu_memory_utilization <= 1))
    return absl::InvalidArgumentError(
        absl::StrCat("gpu_memory_utilization ", s.gpu_memory_utilization, " must be in (0, 1]"));
  if (s.max_model_len < 0 || s.max_num_seqs <= 0 || s.max_num_batched_tokens < 0)
    return absl::InvalidArgumentError(
        "max_model_len and max_num_batched_tokens must not be negative, max_num_seqs must be positive");
  for (int32_t g : s.gpus)
    if (g < 0) return absl::InvalidArgumentError(absl::StrCat("--gpus ", g, " is not a GPU index"));
  if (!s.local_dir.empty())
    if (absl::Status st = common::check_client_path(s.local_dir, "--local-dir"); !st.ok()) return st;
  if (absl::StatusOr<MediaOptions> media = media_options(s); !media.ok()) return media.status();
  if (command.name.empty()) return absl::InvalidArgumentError("name a model to serve");
  // A name that looks like a path is a model folder (engine_adapter.cpp resolves it so).
  if (command.name.front() == '/' || command.name.front() == '.')
    return common::check_client_path(command.name, "model folder");
  if (command.name.size() > 256 || command.name.find('/') != std::string::npos ||
      std::any_of(command.name.begin(), command.name.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20; }))
    return absl::InvalidArgumentError(absl::StrCat("'", command.name.substr(0, 256),
                                                   "' is neither a catalog name nor an absolute model folder path"));
  return absl::OkStatus();
}

// Several GPUs in --gpus are one tensor-parallel group, one rank per GPU (docs/tensor-parallel.md): the size is
// the number of GPUs when not given (1, the default, counts as not given), and a size given that differs from it
// is refused. On the CPU backend --gpus means nothing and is left alone.
absl::Status resolve_gpu_group(ServeSettings& s) {
  if (s.backend == "cpu" || s.gpus.empty()) return absl::OkStatus();
  std::vector<int32_t> sorted = s.gpus;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    return absl::InvalidArgumentError("--gpus names a GPU twice; a tensor-parallel group needs distinct GPUs");
  const auto count = static_cast<int32_t>(s.gpus.size());
  if (s.tensor_parallel_size == 1 && count > 1) s.tensor_parallel_size = count;
  if (s.tensor_parallel_size != count)
    return absl::InvalidArgumentError(absl::StrCat(
        "--tensor-parallel-size ", s.tensor_parallel_size, " does not match the ", count, " GPU",
        count == 1 ? "" : "s", " --gpus names (one rank per GPU); give as many GPUs as ranks, or leave one out"));
  return absl::OkStatus();
}

// A loader that throws (a filesystem error, a bad_alloc, a JSON type error deep in a config reader) fails the
// one model it was loading, never the daemon.
template <typename Step>
auto guarded(const char* step, const std::string& name, Step&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(step, " ", name, " failed: ", e.what()));
  } catch (...) {
    return absl::InternalError(absl::StrCat(step, " ", name, " failed with an unknown exception"));
  }
}

absl::StatusOr<std::string> read_state_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::PermissionDeniedError("it cannot be opened for reading");
  std::string text;
  text.resize(kMaxServedStateBytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return absl::DataLossError("it cannot be read (a directory, or an I/O error)");
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

std::string utc_timestamp() {
  std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y%m%dT%H%M%SZ", &utc);
  return buffer;
}

}  // namespace

EngineManager::EngineManager(std::string state_dir, ModelRegistry& registry, EngineFactory factory, int num_gpus)
    : state_dir_(std::move(state_dir)), registry_(registry), factory_(std::move(factory)), num_gpus_(num_gpus) {}

EngineManager::~EngineManager() {
  shutdown();
}

std::vector<std::string> EngineManager::restoring_names() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> names;
  for (const auto& [index, command] : restoring_) names.push_back(command.name);
  return names;
}

void EngineManager::wait_for_restore() {
  for (std::thread& t : restore_threads_)
    if (t.joinable()) t.join();
  restore_threads_.clear();
}

void EngineManager::shutdown() {
  wait_for_restore();
  for (const auto& model : registry_.list()) {
    registry_.remove(model->name);
    if (model->settings.listen_port > 0 && listener_hooks_.close) listener_hooks_.close(model->name);
    if (model->generator) model->generator->shutdown();
    release_gpus(model->name);
  }
}

std::string EngineManager::state_file() const {
  return (std::filesystem::path(state_dir_) / "served.json").string();
}

absl::Status EngineManager::persist() const {
  // The snapshot and its write happen under one lock, so two changes in quick succession cannot land in the file
  // in the opposite order.
  std::lock_guard<std::mutex> order(persist_mutex_);
  std::vector<ServeCommand> served;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [name, command] : commands_) served.push_back(command);
    // Models still coming back from the last start stay in the file until they are back (or failed).
    for (const auto& [index, command] : restoring_) served.push_back(command);
  }
  // 0600: the file holds the models' API keys.
  return common::write_file_atomically(state_file(), served_state_to_json(served), 0600);
}

void EngineManager::set_aside_corrupt_state(const std::string& reason) const {
  std::string path = state_file();
  std::string aside = absl::StrCat(path, ".corrupt-", utc_timestamp());
  std::error_code ec;
  for (int n = 2; std::filesystem::exists(std::filesystem::symlink_status(aside, ec)); ++n)
    aside = absl::StrCat(path, ".corrupt-", utc_timestamp(), "-", n);
  std::filesystem::rename(path, aside, ec);
  if (ec) {
    spdlog::error(
        "{} is not a served-models file this daemon can read ({}); it could not be moved aside ({}), so the "
        "next change replaces it; nothing restored",
        path, reason, ec.message());
    return;
  }
  spdlog::error("{} is not a served-models file this daemon can read ({}); moved it to {}; nothing restored", path,
                reason, aside);
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
  absl::StatusOr<std::vector<int32_t>> gpus = pick_gpus(settings);
  if (gpus.ok() && !gpus->empty()) gpu_claims_[name] = *gpus;
  return gpus;
}

absl::StatusOr<std::vector<int32_t>> EngineManager::pick_gpus(const ServeSettings& settings) const {
  std::vector<int32_t> gpus = settings.gpus;
  // One GPU per tensor-parallel rank.
  const int32_t wanted = std::max<int32_t>(1, settings.tensor_parallel_size);
  if (gpus.empty() && wanted > 1) {
    // No GPU at all: auto's CPU ranks are what this machine has (as auto runs one rank on the CPU).
    if (num_gpus_ == 0 && settings.backend == "auto") return gpus;
    // With GPUs, auto and cuda want all N; a silent fall back to CPU ranks would serve at a fraction of the
    // speed asked for.
    if (num_gpus_ < wanted)
      return absl::ResourceExhaustedError(absl::StrCat(
          "tensor-parallel size ", wanted, " needs ", wanted, " GPUs, but this daemon sees ", num_gpus_,
          "; serve with a smaller --tensor-parallel-size, or --backend cpu for CPU ranks"));
    std::vector<std::string> held;
    for (int32_t g = 0; g < num_gpus_; ++g) {
      const std::string* holder = holder_of(g);
      if (holder == nullptr) {
        if (static_cast<int32_t>(gpus.size()) < wanted) gpus.push_back(g);
      } else {
        held.push_back(absl::StrCat("GPU ", g, " by '", *holder, "'"));
      }
    }
    if (static_cast<int32_t>(gpus.size()) < wanted)
      return absl::ResourceExhaustedError(absl::StrCat(
          "tensor-parallel size ", wanted, " needs ", wanted, " free GPUs, but only ", gpus.size(), " of ", num_gpus_,
          " are free (held: ", absl::StrJoin(held, ", "), "); stop one first (bmserver chat ps)"));
    return gpus;
  }
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
  return gpus;
}

absl::StatusOr<std::string> EngineManager::plan(const ServeCommand& requested) const {
  if (!factory_.plan) return absl::UnimplementedError("this daemon cannot plan a serve (--check)");
  if (absl::Status s = check_settings(requested); !s.ok()) return s;
  ServeCommand command = requested;
  if (absl::Status s = resolve_gpu_group(command.settings); !s.ok()) return s;
  absl::StatusOr<ResolvedModel> resolved = factory_.resolve(command.name, command.settings);
  if (!resolved.ok()) return resolved.status();
  if (std::shared_ptr<ServedModel> existing = registry_.find(resolved->name);
      existing && existing->state() != ModelState::kFailed)
    return absl::AlreadyExistsError(absl::StrCat(
        "'", resolved->name, "' is already served; stop it first (bmserver chat stop ", resolved->name, ")"));
  for (int32_t g : command.settings.gpus)
    if (g >= num_gpus_)
      return absl::InvalidArgumentError(
          absl::StrCat("--gpus ", g, " is not a GPU this daemon sees (it sees ", num_gpus_, ")"));
  ServeSettings settings = command.settings;
  if (settings.backend != "cpu") {
    std::lock_guard<std::mutex> lock(mutex_);
    absl::StatusOr<std::vector<int32_t>> gpus = pick_gpus(settings);
    if (!gpus.ok()) return gpus.status();
    settings.gpus = *gpus;
  }
  absl::StatusOr<std::string> text = factory_.plan(*resolved, settings);
  if (!text.ok()) return text.status();
  return absl::StrCat("Plan for ", resolved->name, " (", resolved->repo_id, "); nothing was loaded:\n", *text);
}

void EngineManager::release_gpus(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  gpu_claims_.erase(name);
}

absl::StatusOr<std::shared_ptr<ServedModel>> EngineManager::serve(const ServeCommand& command,
                                                                  const ProgressCallback& progress) {
  return serve_or_fail(command, progress, std::nullopt);
}

void EngineManager::keep_failed(const std::shared_ptr<ServedModel>& model, const ServeCommand& command,
                                size_t restore_index, const absl::Status& status) {
  model->set_failed(std::string(status.message()));
  if (registry_.find(model->name) == nullptr) registry_.add(model);
  std::lock_guard<std::mutex> lock(mutex_);
  // Still in the state file: the next start tries again, and `chat stop` removes it from there.
  commands_[model->name] = command;
  restoring_.erase(restore_index);
}

absl::StatusOr<std::shared_ptr<ServedModel>> EngineManager::serve_or_fail(const ServeCommand& requested,
                                                                          const ProgressCallback& progress,
                                                                          std::optional<size_t> restore_index) {
  // With --gpus' count as the tensor-parallel size when several are named (resolve_gpu_group); what is saved and
  // shown (chat ps) is this resolved command.
  ServeCommand command = requested;
  // A restored model that cannot come back is listed as failed under the name it was saved with.
  auto fail_before_resolving = [&](const absl::Status& status) {
    if (restore_index) {
      auto stand_in = std::make_shared<ServedModel>();
      stand_in->name = command.name;
      stand_in->repo_id = command.name;
      stand_in->settings = command.settings;
      keep_failed(stand_in, command, *restore_index, status);
    }
    return status;
  };
  if (absl::Status s = check_settings(command); !s.ok()) return fail_before_resolving(s);
  if (absl::Status s = resolve_gpu_group(command.settings); !s.ok()) return fail_before_resolving(s);
  absl::StatusOr<MediaOptions> media = media_options(command.settings);
  if (!media.ok()) return fail_before_resolving(media.status());
  progress({"resolving", "looking up " + command.name, -1});
  absl::StatusOr<ResolvedModel> resolved =
      guarded("resolving", command.name, [&] { return factory_.resolve(command.name, command.settings); });
  if (!resolved.ok()) return fail_before_resolving(resolved.status());
  if (std::shared_ptr<ServedModel> existing = registry_.find(resolved->name); existing) {
    if (existing->state() != ModelState::kFailed)
      return absl::AlreadyExistsError(absl::StrCat(
          "'", resolved->name, "' is already served; stop it first (bmserver chat stop ", resolved->name, ")"));
    // Serving a model that failed replaces the failed entry.
    registry_.remove(existing->name);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      commands_.erase(existing->name);
    }
    if (absl::Status s = persist(); !s.ok())
      spdlog::warn("could not persist served models: {}", std::string(s.message()));
  }

  auto model = std::make_shared<ServedModel>();
  model->name = resolved->name;
  model->repo_id = resolved->repo_id;
  model->path = resolved->path;
  model->modality = resolved->modality;
  model->tool_call_format = resolved->tool_call_format;
  model->reasoning_format = resolved->reasoning_format;
  model->settings = command.settings;
  model->media = *std::move(media);
  registry_.add(model);  // visible as loading: /health answers 503 until it is ready

  bool listening = false;
  auto fail = [&](const absl::Status& status) {
    if (listening && listener_hooks_.close) listener_hooks_.close(model->name);
    release_gpus(model->name);
    if (restore_index)
      keep_failed(model, command, *restore_index, status);
    else
      registry_.remove(model->name);
    return status;
  };
  for (int32_t g : command.settings.gpus)
    if (g >= num_gpus_)
      return fail(absl::InvalidArgumentError(
          absl::StrCat("--gpus ", g, " is not a GPU this daemon sees (it sees ", num_gpus_, ")")));
  // The GPUs --gpus names, else the first free one (or the first N free ones for tensor-parallel size N).
  absl::StatusOr<std::vector<int32_t>> gpus = claim_gpus(model->name, command.settings);
  if (!gpus.ok()) return fail(gpus.status());
  if (command.settings.listen_port > 0 && listener_hooks_.open) {
    if (absl::Status s = listener_hooks_.open(model); !s.ok()) return fail(s);
    listening = true;
  }

  ServeSettings settings = command.settings;
  settings.gpus = *gpus;  // the adapter loads onto exactly these
  absl::StatusOr<LoadedEngine> loaded =
      guarded("loading", model->name, [&] { return factory_.load(*resolved, settings, progress); });
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
  model->processor_config = std::move(loaded->processor_config);
  if (loaded->backend != "cpu") model->settings.gpus = *gpus;
  model->ranks = loaded->ranks;
  // Rank r runs on the group's r-th GPU (the adapter loads onto exactly these, in this order).
  if (loaded->backend != "cpu")
    for (RankMemory& rank : model->ranks)
      if (static_cast<size_t>(rank.rank) < gpus->size()) rank.gpu = (*gpus)[static_cast<size_t>(rank.rank)];
  model->started_at = std::chrono::steady_clock::now();
  model->set_ready();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    commands_[model->name] = command;
    if (restore_index) restoring_.erase(*restore_index);
  }
  // A restored model is already in the file; anything else changed it.
  if (!restore_index)
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
  if (model->settings.listen_port > 0 && listener_hooks_.close) listener_hooks_.close(model->name);
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
  std::string path = state_file();
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::symlink_status(path, ec))) return;  // first start: nothing served
  absl::StatusOr<std::string> text = read_state_text(path);
  absl::StatusOr<std::vector<ServeCommand>> commands =
      text.ok() ? parse_served_state(*text) : absl::StatusOr<std::vector<ServeCommand>>(text.status());
  if (!commands.ok()) {
    set_aside_corrupt_state(std::string(commands.status().message()));
    return;
  }
  // Files written before the state file became 0600 hold API keys readable by others.
  std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write, ec);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < commands->size(); ++i) restoring_[i] = (*commands)[i];
  }
  for (size_t i = 0; i < commands->size(); ++i) {
    ServeCommand command = (*commands)[i];
    restore_threads_.emplace_back([this, i, command] {
      // Nothing may leave this thread: an exception here would end the daemon.
      try {
        absl::StatusOr<std::shared_ptr<ServedModel>> served = serve_or_fail(
            command, [](const ServeProgress&) {}, i);
        if (!served.ok())
          spdlog::error("could not serve {} again after restart: {}", command.name,
                        std::string(served.status().message()));
      } catch (const std::exception& e) {
        spdlog::error("could not serve {} again after restart: {}", command.name, e.what());
      } catch (...) {
        spdlog::error("could not serve {} again after restart: unknown exception", command.name);
      }
      std::lock_guard<std::mutex> lock(mutex_);
      restoring_.erase(i);  // a duplicate entry that was refused
    });
  }
}

}  // namespace bm::daemon::serving
