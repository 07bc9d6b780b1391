#include "common/hub/ms_cache_layout.h"

#include <sys/stat.h>

#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/hub/layout_util.h"
#include "common/hub/sha256.h"

namespace bm::common {

namespace fs = std::filesystem;

MsCacheLayout::MsCacheLayout(std::string cache_root, const std::string& repo_id)
    : cache_root_(std::move(cache_root)), repo_id_(repo_id) {
  repo_dir_ = cache_root_ + "/models/" + absl::StrReplaceAll(repo_id, {{"/", "--"}});
}

absl::Status MsCacheLayout::begin(const RemoteSnapshot& snapshot) {
  revision_ = snapshot.commit.empty() ? "master" : snapshot.commit;
  absl::Status status = make_dirs(work_dir());
  if (!status.ok()) return status;
  if (!fs::exists(snapshot_path())) {
    staging_ = absl::StrCat(repo_dir_, "/.staging/", revision_, ".", unique_suffix());
    status = make_dirs(staging_);
  }
  return status;
}

bool MsCacheLayout::has_file(const RemoteFile& file) const {
  std::string path = snapshot_path() + "/" + file.path;
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec || size != file.size) return false;
  if (file.sha256.empty()) return true;
  // modelscope re-hashes a cache hit when the hash is known; so do we (no marker files to trust).
  absl::StatusOr<std::string> sha = sha256_file(path);
  return sha.ok() && *sha == file.sha256;
}

std::string MsCacheLayout::lock_path(const RemoteFile& file) const {
  // modelscope_hub's per-file lock name (hub-protocols §4.6).
  std::string repo = absl::StrReplaceAll(repo_id_, {{"/", "___"}});
  std::string path = absl::StrReplaceAll(file.path, {{"/", "___"}, {".", "_"}});
  return absl::StrCat(cache_root_, "/.lock/model_", repo, "_", path, ".lock");
}

std::string MsCacheLayout::repo_lock_path() const {
  return absl::StrCat(cache_root_, "/.lock/bm_repo_", absl::StrReplaceAll(repo_id_, {{"/", "___"}}), ".lock");
}

absl::Status MsCacheLayout::place_file(const RemoteFile& file, const std::string& temp_path) {
  std::string target = target_dir() + "/" + file.path;
  absl::Status status = make_dirs(fs::path(target).parent_path().string());
  if (!status.ok()) return status;
  absl::Status mode = set_store_file_mode(temp_path);
  if (!mode.ok()) return mode;
  return rename_path(temp_path, target);
}

absl::Status MsCacheLayout::commit(const RemoteSnapshot& snapshot) {
  if (staging_.empty()) return absl::OkStatus();
  absl::Status status = make_dirs(repo_dir_ + "/snapshots");
  if (status.ok() && !fs::exists(snapshot_path())) status = rename_path(staging_, snapshot_path());
  std::error_code ec;
  if (fs::exists(staging_)) {
    // A concurrent download committed first: move our verified files over theirs one by one.
    for (const RemoteFile& file : snapshot.files) {
      std::string from = staging_ + "/" + file.path;
      if (!fs::exists(from)) continue;
      std::string to = snapshot_path() + "/" + file.path;
      (void)make_dirs(fs::path(to).parent_path().string());
      absl::Status moved = rename_path(from, to);
      if (!moved.ok()) return moved;
    }
    fs::remove_all(staging_, ec);
    status = absl::OkStatus();
  }
  fs::remove(repo_dir_ + "/.staging", ec);
  staging_.clear();
  return status;
}

std::map<std::string, std::string> MsCacheLayout::current_files() const {
  std::map<std::string, std::string> files;
  std::string root = snapshot_path();
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return files;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    // No content id without hashing every file; the downloader then compares by presence.
    files[it->path().lexically_relative(root).string()] = "";
  }
  return files;
}

std::string MsCacheLayout::current_commit() const {
  return fs::exists(snapshot_path()) ? revision_ : "";
}

absl::StatusOr<uint64_t> MsCacheLayout::drop_previous(const std::string& previous_commit,
                                                      const RemoteSnapshot& current) {
  std::set<std::string> wanted;
  for (const RemoteFile& file : current.files) wanted.insert(file.path);
  uint64_t freed = 0;
  std::error_code ec;
  for (const auto& [path, size] : current_files()) {
    if (wanted.count(path) > 0) continue;
    auto bytes = fs::file_size(snapshot_path() + "/" + path, ec);
    if (!ec && fs::remove(snapshot_path() + "/" + path, ec)) freed += bytes;
  }
  return freed;
}

}  // namespace bm::common
