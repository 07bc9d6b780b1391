#include "common/hub/hf_local_dir_layout.h"

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/hub/layout_util.h"

namespace bm::common {

namespace fs = std::filesystem;

namespace {

struct Metadata {
  std::string commit;
  std::string etag;
};

Metadata read_metadata(const std::string& path) {
  std::vector<std::string> lines = absl::StrSplit(read_small_file(path), '\n');
  Metadata metadata;
  if (lines.size() >= 2) {
    metadata.commit = lines[0];
    metadata.etag = lines[1];
  }
  return metadata;
}

}  // namespace

HfLocalDirLayout::HfLocalDirLayout(std::string store_root, const std::string& repo_id)
    : dir_(std::move(store_root) + "/" + repo_id) {}

absl::Status HfLocalDirLayout::begin(const RemoteSnapshot& snapshot) {
  commit_ = snapshot.commit;
  absl::Status status = make_dirs(work_dir());
  if (!status.ok()) return status;
  std::string cache = dir_ + "/.cache/huggingface";
  if (!fs::exists(cache + "/.gitignore")) (void)atomic_write_file(cache + "/.gitignore", "*");
  if (!fs::exists(cache + "/CACHEDIR.TAG")) {
    (void)atomic_write_file(cache + "/CACHEDIR.TAG", "Signature: 8a477f597d28d172789f06886806bc55\n");
  }
  return absl::OkStatus();
}

bool HfLocalDirLayout::has_file(const RemoteFile& file) const {
  std::error_code ec;
  auto size = fs::file_size(dir_ + "/" + file.path, ec);
  return !ec && size == file.size && read_metadata(metadata_path(file.path)).etag == file.etag;
}

std::string HfLocalDirLayout::lock_path(const RemoteFile& file) const {
  return metadata_path(file.path) + ".lock";
}

std::string HfLocalDirLayout::temp_prefix(const RemoteFile& file) const {
  return work_dir() + "/" + file.etag;
}

absl::Status HfLocalDirLayout::place_file(const RemoteFile& file, const std::string& temp_path) {
  std::string target = dir_ + "/" + file.path;
  absl::Status status = make_dirs(fs::path(target).parent_path().string());
  if (!status.ok()) return status;
  absl::Status mode = set_store_file_mode(temp_path);
  if (!mode.ok()) return mode;
  status = rename_path(temp_path, target);
  if (!status.ok()) return status;
  // The timestamp must not be older than the file's mtime, or huggingface_hub distrusts the metadata.
  double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count() + 1;
  return atomic_write_file(metadata_path(file.path), absl::StrFormat("%s\n%s\n%.6f\n", commit_, file.etag, now));
}

absl::Status HfLocalDirLayout::commit(const RemoteSnapshot& snapshot) {
  return absl::OkStatus();
}

std::map<std::string, std::string> HfLocalDirLayout::current_files() const {
  std::map<std::string, std::string> files;
  std::string root = work_dir();
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::string rel = it->path().lexically_relative(root).string();
    constexpr std::string_view kSuffix = ".metadata";
    if (rel.size() <= kSuffix.size() || rel.compare(rel.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0)
      continue;
    std::string path = rel.substr(0, rel.size() - kSuffix.size());
    if (fs::exists(dir_ + "/" + path)) files[path] = read_metadata(it->path().string()).etag;
  }
  return files;
}

std::string HfLocalDirLayout::current_commit() const {
  std::string commit;
  for (const auto& [path, etag] : current_files()) {
    commit = read_metadata(metadata_path(path)).commit;
    if (!commit.empty()) break;
  }
  return commit;
}

absl::StatusOr<uint64_t> HfLocalDirLayout::drop_previous(const std::string& previous_commit,
                                                         const RemoteSnapshot& current) {
  std::set<std::string> wanted;
  for (const RemoteFile& file : current.files) wanted.insert(file.path);
  uint64_t freed = 0;
  std::error_code ec;
  // Only files a downloader recorded go: anything the user put there stays.
  for (const auto& [path, etag] : current_files()) {
    if (wanted.count(path) > 0) continue;
    auto size = fs::file_size(dir_ + "/" + path, ec);
    if (!ec && fs::remove(dir_ + "/" + path, ec)) freed += size;
    fs::remove(metadata_path(path), ec);
  }
  return freed;
}

}  // namespace bm::common
