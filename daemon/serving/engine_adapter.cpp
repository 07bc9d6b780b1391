// The engine-facing half of serving: resolve a served name to a model folder with its catalog facts, and load
// tokenizer, chat template and engine for it.
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/catalog/catalog.h"
#include "common/store/model_store.h"
#include "common/store/store_roots.h"
#include "daemon/serving/engine_manager.h"

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
    return absl::NotFoundError(absl::StrCat("'", name, "' is not a catalog model or a model folder (", close_names(name), ")"));
  common::StoreRoots roots = common::resolve_store_roots();
  absl::StatusOr<std::unique_ptr<common::ModelStore>> store = common::open_model_store(settings.hub, settings.local_dir, roots);
  if (!store.ok()) return store.status();
  std::string hub = settings.hub.empty() ? roots.default_hub : settings.hub;
  const std::string& repo_id = hub == "ms" ? entry->ms_repo_id : entry->hf_repo_id;
  std::optional<common::StoredModel> stored = (*store)->find(repo_id);
  std::string download = absl::StrCat("bmserver chat download ", name,
                                      settings.local_dir.empty() ? "" : " --local-dir " + settings.local_dir,
                                      settings.hub.empty() ? "" : " --hub " + settings.hub);
  if (!stored)
    return absl::NotFoundError(absl::StrCat(repo_id, " is not downloaded in ", (*store)->root(), "; run `", download, "`"));
  if (stored->state != common::StoredState::kDownloaded || stored->snapshot_path.empty())
    return absl::FailedPreconditionError(absl::StrCat(repo_id, " in ", stored->repo_path, " is ",
                                                      std::string(common::stored_state_name(stored->state)), ": ", stored->reason,
                                                      "; run `", download, "` to complete it"));
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

absl::StatusOr<LoadedEngine> load(const ResolvedModel& model, const ServeSettings& settings, const ProgressCallback& progress) {
  return absl::UnimplementedError(absl::StrCat(
      "cannot serve ", model.name, ": this bmserverd has no engine runtime yet (tokenizer, model loading and the "
      "scheduler are still being built; see docs/status.md)"));
}

}  // namespace

EngineFactory default_engine_factory() { return EngineFactory{resolve, load}; }

}  // namespace bm::daemon::serving
