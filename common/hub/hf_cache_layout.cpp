#include "common/hub/hf_cache_layout.h"

#include <sys/stat.h>

#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/hub/hf_api.h"
#include "common/hub/layout_util.h"

namespace bm::common {

namespace fs = std::filesystem;

namespace {

// "../../blobs/x" for a top-level file, one more "../" per sub-folder.
std::string link_target(const std::string& path, const std::string& etag) {
  std::string up = "../../";
  for (char c : path) {
    if (c == '/') up += "../";
  }
  return absl::StrCat(up, "blobs/", etag);
}

absl::Status link_all(const std::string& folder, const RemoteSnapshot& snapshot) {
  for (const RemoteFile& file : snapshot.files) {
    absl::Status status = replace_symlink(link_target(file.path, file.etag), folder + "/" + file.path);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace

HfCacheLayout::HfCacheLayout(std::string cache_root, std::string repo_id)
    : cache_root_(std::move(cache_root)), repo_id_(std::move(repo_id)) {
  repo_dir_ = cache_root_ + "/" + repo_folder_name(repo_id_);
}

std::string HfCacheLayout::repo_folder_name(const std::string& repo_id) {
  return "models--" + absl::StrReplaceAll(repo_id, {{"/", "--"}});
}

absl::Status HfCacheLayout::begin(const RemoteSnapshot& snapshot) {
  revision_ = snapshot.revision.empty() ? "main" : snapshot.revision;
  commit_ = snapshot.commit;
  for (const char* sub : {"/blobs", "/refs", "/snapshots"}) {
    absl::Status status = make_dirs(repo_dir_ + sub);
    if (!status.ok()) return status;
  }
  // huggingface_hub writes the same tag (HEAD); scan_cache_dir skips it.
  std::string tag = cache_root_ + "/CACHEDIR.TAG";
  if (!fs::exists(tag)) {
    (void)atomic_write_file(tag,
                            "Signature: 8a477f597d28d172789f06886806bc55\n"
                            "# This file is a cache directory tag created by bmserver.\n");
  }
  return absl::OkStatus();
}

std::string HfCacheLayout::snapshot_path() const {
  return repo_dir_ + "/snapshots/" + commit_;
}

bool HfCacheLayout::has_file(const RemoteFile& file) const {
  std::error_code ec;
  auto size = fs::file_size(blob_path(file.etag), ec);
  return !ec && size == file.size;
}

std::string HfCacheLayout::lock_path(const RemoteFile& file) const {
  return absl::StrCat(cache_root_, "/.locks/", repo_folder_name(repo_id_), "/", file.etag, ".lock");
}

std::string HfCacheLayout::repo_lock_path() const {
  return absl::StrCat(cache_root_, "/.locks/", repo_folder_name(repo_id_), "/bm-repo.lock");
}

std::string HfCacheLayout::temp_prefix(const RemoteFile& file) const {
  return blob_path(file.etag);
}

absl::Status HfCacheLayout::place_file(const RemoteFile& file, const std::string& temp_path) {
  absl::Status mode = set_store_file_mode(temp_path);
  if (!mode.ok()) return mode;
  return rename_path(temp_path, blob_path(file.etag));
}

absl::Status HfCacheLayout::commit(const RemoteSnapshot& snapshot) {
  std::string final_dir = snapshot_path();
  if (!fs::exists(final_dir)) {
    std::string staging = absl::StrCat(repo_dir_, "/.bm-staging/", commit_, ".", unique_suffix());
    absl::Status status = link_all(staging, snapshot);
    if (status.ok()) status = rename_path(staging, final_dir);
    std::error_code ec;
    fs::remove_all(staging, ec);
    fs::remove(repo_dir_ + "/.bm-staging", ec);  // only when empty: another downloader may be staging
    if (!status.ok() && !fs::exists(final_dir)) return status;
  }
  // The folder existed (another tool made it, maybe partly) or a concurrent download won the rename: add the
  // links one at a time, each atomically, so every visible file is complete.
  absl::Status status = link_all(final_dir, snapshot);
  if (!status.ok()) return status;
  // refs/{revision} moves last, and only when the revision is a name (hub-protocols §2, refs).
  if (revision_ != commit_) {
    status = atomic_write_file(repo_dir_ + "/refs/" + revision_, commit_);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

std::map<std::string, std::string> HfCacheLayout::snapshot_files(const std::string& commit) const {
  std::map<std::string, std::string> files;
  std::string root = repo_dir_ + "/snapshots/" + commit;
  std::error_code ec;
  if (commit.empty() || !fs::is_directory(root, ec)) return files;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_directory(ec)) continue;
    std::string rel = it->path().lexically_relative(root).string();
    std::string id;
    if (it->is_symlink(ec)) id = fs::read_symlink(it->path(), ec).filename().string();
    files[rel] = id;
  }
  return files;
}

std::map<std::string, std::string> HfCacheLayout::current_files() const {
  return snapshot_files(current_commit());
}

std::string HfCacheLayout::current_commit() const {
  if (is_commit_sha(revision_)) return fs::exists(repo_dir_ + "/snapshots/" + revision_) ? revision_ : "";
  std::string commit = read_small_file(repo_dir_ + "/refs/" + revision_);
  return is_commit_sha(commit) ? commit : std::string();
}

absl::StatusOr<uint64_t> HfCacheLayout::drop_previous(const std::string& previous_commit,
                                                      const RemoteSnapshot& current) {
  if (previous_commit.empty() || previous_commit == current.commit) return uint64_t{0};
  std::set<std::string> still_used;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(repo_dir_ + "/snapshots", ec)) {
    std::string name = entry.path().filename().string();
    if (name == previous_commit) continue;
    for (const auto& [path, etag] : snapshot_files(name)) still_used.insert(etag);
  }
  uint64_t freed = 0;
  for (const auto& [path, etag] : snapshot_files(previous_commit)) {
    if (etag.empty() || still_used.count(etag) > 0) continue;
    std::string blob = blob_path(etag);
    auto size = fs::file_size(blob, ec);
    if (!ec && fs::remove(blob, ec)) freed += size;
  }
  fs::remove_all(repo_dir_ + "/snapshots/" + previous_commit, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot remove the old snapshot ", previous_commit, ": ", ec.message()));
  return freed;
}

}  // namespace bm::common
