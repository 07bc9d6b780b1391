#include "common/store/hf_cache.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/store/disk_usage.h"
#include "common/store/model_files.h"

namespace bm::common {
namespace {

namespace fs = std::filesystem;

bool is_commit_sha(const std::string& text) {
  if (text.size() != 40) return false;
  for (char c : text)
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return false;
  return true;
}

std::vector<std::string> snapshot_names(const fs::path& snapshots) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(snapshots, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    if (it->is_directory(ec)) names.push_back(it->path().filename().string());
  return names;
}

void mark(StoredModel& model, StoredState state, std::string reason) {
  model.state = state;
  model.reason = std::move(reason);
}

// Which commit serving uses: refs/main, else the only snapshot (a download pinned to a commit writes no ref).
bool resolve_commit(const fs::path& repo, StoredModel& model) {
  fs::path ref = repo / "refs" / "main";
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(ref, ec))) {
    std::vector<std::string> names = snapshot_names(repo / "snapshots");
    if (names.size() == 1 && is_commit_sha(names[0])) {
      model.revision = names[0];
      return true;
    }
    mark(model, StoredState::kIncomplete,
         absl::StrCat("refs/main is missing and snapshots/ holds ", names.size(), " snapshots, so none is current"));
    return false;
  }
  std::ifstream in(ref);
  std::stringstream text;
  text << in.rdbuf();
  if (!in.good() && !in.eof()) {
    mark(model, StoredState::kCorrupt, absl::StrCat("cannot read ", ref.string()));
    return false;
  }
  // huggingface_hub writes no newline; one written by hand (echo) is tolerated, as git tolerates it.
  std::string commit(absl::StripAsciiWhitespace(text.str()));
  if (!is_commit_sha(commit)) {
    mark(model, StoredState::kCorrupt, absl::StrCat("refs/main holds '", commit.substr(0, 64), "', not a commit sha"));
    return false;
  }
  model.revision = commit;
  return true;
}

}  // namespace

std::string hf_repo_folder_name(const std::string& repo_id) {
  return "models--" + absl::StrReplaceAll(repo_id, {{"/", "--"}});
}

std::optional<StoredModel> HfCache::inspect(const std::string& repo_id) const {
  std::string folder_name = hf_repo_folder_name(repo_id);
  fs::path repo = fs::path(root()) / folder_name;
  std::error_code ec;
  fs::file_status status = fs::symlink_status(repo, ec);
  if (!fs::exists(status)) return std::nullopt;

  StoredModel model;
  model.repo_path = repo.string();
  model.remove_paths.push_back(repo.string());
  fs::path locks = fs::path(root()) / ".locks" / folder_name;
  if (fs::exists(fs::symlink_status(locks, ec))) model.remove_paths.push_back(locks.string());
  if (!fs::is_directory(status)) {
    mark(model, StoredState::kCorrupt, absl::StrCat(folder_name, " is not a folder"));
    return model;
  }
  fs::path snapshots = repo / "snapshots";
  if (!fs::is_directory(snapshots, ec)) {
    if (ec && ec != std::errc::no_such_file_or_directory)
      mark(model, StoredState::kCorrupt, absl::StrCat("cannot read ", snapshots.string(), ": ", ec.message()));
    else
      mark(model, StoredState::kIncomplete, "snapshots/ is missing (no file has been completed yet)");
    return model;
  }
  DiskUsage usage = measure_tree(snapshots);
  model.size_on_disk = usage.bytes;
  model.num_files = usage.num_files;
  model.last_modified_unix = usage.last_modified_unix;
  model.last_accessed_unix = usage.last_accessed_unix;
  if (!usage.unreadable.empty()) {
    mark(model, StoredState::kCorrupt, absl::StrCat("cannot read ", usage.unreadable.front()));
    return model;
  }
  if (!resolve_commit(repo, model)) return model;
  fs::path snapshot = snapshots / model.revision;
  if (!fs::is_directory(snapshot, ec)) {
    mark(model, StoredState::kCorrupt,
         absl::StrCat("refs/main names commit ", model.revision, " but snapshots/", model.revision, " is missing"));
    return model;
  }
  model.snapshot_path = snapshot.string();
  FolderCheck check = check_model_folder(snapshot);
  mark(model, check.state, check.reason);
  if (model.state == StoredState::kDownloaded && !usage.dangling.empty())
    mark(model, StoredState::kCorrupt,
         absl::StrCat(usage.dangling.size(), " snapshot files point to missing blobs (first: snapshots/",
                      usage.dangling.front(), ")"));
  return model;
}

}  // namespace bm::common
