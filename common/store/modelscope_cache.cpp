#include "common/store/modelscope_cache.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/store/disk_usage.h"
#include "common/store/model_files.h"

namespace bm::common {
namespace {

namespace fs = std::filesystem;

bool exists_no_follow(const fs::path& path) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(path, ec));
}

void fill_usage(const fs::path& folder, StoredModel& model) {
  DiskUsage usage = measure_tree(folder, [](const std::string& name) { return name == ".DS_Store"; });
  model.size_on_disk = usage.bytes;
  model.num_files = usage.num_files;
  model.last_modified_unix = usage.last_modified_unix;
  model.last_accessed_unix = usage.last_accessed_unix;
  FolderCheck check = check_model_folder(folder);
  model.state = check.state;
  model.reason = check.reason;
  if (!usage.unreadable.empty()) {
    model.state = StoredState::kCorrupt;
    model.reason = absl::StrCat("cannot read ", usage.unreadable.front());
  } else if (model.state == StoredState::kDownloaded && !usage.dangling.empty()) {
    model.state = StoredState::kCorrupt;
    model.reason =
        absl::StrCat(usage.dangling.size(), " files are dangling links (first: ", usage.dangling.front(), ")");
  }
}

// The classic layouts record the revision in .mv as "Revision:{rev},CreatedAt:{epoch}".
std::string read_mv_revision(const fs::path& folder) {
  std::ifstream in(folder / ".mv");
  std::stringstream text;
  text << in.rdbuf();
  for (absl::string_view field : absl::StrSplit(text.str(), ',')) {
    field = absl::StripAsciiWhitespace(field);
    if (absl::ConsumePrefix(&field, "Revision:")) return std::string(field);
  }
  return "";
}

// >= 1.38: one repo folder, revisions under snapshots/; "master" (the default branch) wins, else the newest.
std::optional<StoredModel> find_new_layout(const fs::path& repo) {
  if (!exists_no_follow(repo)) return std::nullopt;
  StoredModel model;
  model.repo_path = repo.string();
  model.remove_paths.push_back(repo.string());
  std::error_code ec;
  fs::path snapshots = repo / "snapshots";
  std::string chosen;
  fs::file_time_type newest{};
  for (fs::directory_iterator it(snapshots, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    if (!it->is_directory(ec)) continue;
    std::string name = it->path().filename().string();
    fs::file_time_type time = fs::last_write_time(it->path(), ec);
    if (name == "master" || (chosen != "master" && (chosen.empty() || time > newest))) {
      chosen = name;
      newest = time;
    }
  }
  if (chosen.empty()) {
    model.state = StoredState::kIncomplete;
    model.reason = "snapshots/ holds no revision";
    return model;
  }
  model.revision = chosen;
  model.snapshot_path = (snapshots / chosen).string();
  fill_usage(snapshots / chosen, model);
  return model;
}

// Classic: {parent}/{name___} is the folder, {parent}/{name} an optional link to it (or the folder itself
// when the name has no dot).
std::optional<StoredModel> find_classic(const fs::path& parent, const std::string& name) {
  fs::path dotted = parent / name;
  fs::path escaped = parent / modelscope_folder_name(name);
  StoredModel model;
  std::error_code ec;
  if (dotted != escaped && fs::is_symlink(fs::symlink_status(dotted, ec)))
    model.remove_paths.push_back(dotted.string());
  fs::path folder;
  if (exists_no_follow(escaped)) {
    folder = escaped;
    model.remove_paths.push_back(escaped.string());
  } else if (exists_no_follow(dotted)) {
    folder = dotted;
    if (model.remove_paths.empty()) model.remove_paths.push_back(dotted.string());
  } else {
    return std::nullopt;
  }
  model.repo_path = folder.string();
  if (!fs::is_directory(folder, ec)) {
    model.state = StoredState::kCorrupt;
    model.reason = absl::StrCat(folder.string(), " is not a folder (or a link to one)");
    return model;
  }
  model.snapshot_path = folder.string();
  model.revision = read_mv_revision(folder);
  fill_usage(folder, model);
  return model;
}

}  // namespace

std::string modelscope_folder_name(const std::string& name) {
  return absl::StrReplaceAll(name, {{".", "___"}});
}

ModelScopeCache::ModelScopeCache(const StoreRoots& roots)
    : ModelStore(roots.modelscope_cache,
                 roots.modelscope_cache_from_env
                     ? std::vector<std::string>{}
                     : std::vector<std::string>{fs::path(roots.modelscope_cache).parent_path().string()}) {
  new_layout_bases_.push_back(root());
  if (!roots.modelscope_cache_from_env) new_layout_bases_.push_back(fs::path(root()).parent_path().string());
}

std::optional<StoredModel> ModelScopeCache::inspect(const std::string& repo_id) const {
  std::vector<std::string> parts = absl::StrSplit(repo_id, '/');
  if (parts.size() != 2) return std::nullopt;
  const std::string& org = parts[0];
  const std::string& name = parts[1];
  for (const std::string& base : new_layout_bases_)
    if (auto found = find_new_layout(fs::path(base) / "models" / absl::StrCat(org, "--", name))) return found;
  if (auto found = find_classic(fs::path(root()) / "models" / org, name)) return found;
  return find_classic(fs::path(root()) / org, name);
}

}  // namespace bm::common
