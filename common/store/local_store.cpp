#include "common/store/local_store.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/store/disk_usage.h"
#include "common/store/model_files.h"

namespace bm::common {
namespace {
namespace fs = std::filesystem;

// huggingface_hub's local-dir metadata: three lines, the first the commit.
std::string recorded_commit(const fs::path& folder) {
  std::ifstream in(folder / ".cache" / "huggingface" / "download" / "config.json.metadata");
  std::string commit;
  std::getline(in, commit);
  return commit.size() == 40 ? commit : "";
}
}  // namespace

std::optional<StoredModel> LocalStore::inspect(const std::string& repo_id) const {
  fs::path folder = fs::path(root()) / repo_id;
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(folder, ec))) return std::nullopt;
  StoredModel model;
  model.repo_path = folder.string();
  model.remove_paths.push_back(folder.string());
  if (!fs::is_directory(folder, ec)) {
    model.state = StoredState::kCorrupt;
    model.reason = absl::StrCat(folder.string(), " is not a folder");
    return model;
  }
  model.snapshot_path = folder.string();
  DiskUsage usage = measure_tree(folder, [](const std::string& name) { return name == ".DS_Store"; });
  model.size_on_disk = usage.bytes;
  model.num_files = usage.num_files;
  model.last_modified_unix = usage.last_modified_unix;
  model.last_accessed_unix = usage.last_accessed_unix;
  model.revision = recorded_commit(folder);
  FolderCheck check = check_model_folder(folder);
  model.state = check.state;
  model.reason = check.reason;
  if (!usage.unreadable.empty()) {
    model.state = StoredState::kCorrupt;
    model.reason = absl::StrCat("cannot read ", usage.unreadable.front());
  }
  return model;
}

}  // namespace bm::common
