#pragma once
#include <string>

#include "common/hub/snapshot_layout.h"

namespace bm::common {

// The layout modelscope >= 1.38 reads (hub-protocols §4.2): {root}/models/{org}--{name}/snapshots/{revision}/
// with plain files and no markers. A new snapshot is assembled in a staging folder and renamed in whole; an
// existing one gets each file replaced atomically. Temp files live outside the snapshot folder.
class MsCacheLayout : public SnapshotLayout {
 public:
  MsCacheLayout(std::string cache_root, const std::string& repo_id);

  absl::Status begin(const RemoteSnapshot& snapshot) override;
  std::string snapshot_path() const override { return repo_dir_ + "/snapshots/" + revision_; }
  std::string work_dir() const override { return repo_dir_ + "/.incomplete"; }
  bool has_file(const RemoteFile& file) const override;
  std::string lock_path(const RemoteFile& file) const override;
  std::string repo_lock_path() const override;
  std::string temp_prefix(const RemoteFile& file) const override { return work_dir() + "/" + file.etag; }
  absl::Status place_file(const RemoteFile& file, const std::string& temp_path) override;
  absl::Status commit(const RemoteSnapshot& snapshot) override;
  std::map<std::string, std::string> current_files() const override;
  std::string current_commit() const override;
  absl::StatusOr<uint64_t> drop_previous(const std::string& previous_commit, const RemoteSnapshot& current) override;

 private:
  std::string target_dir() const { return staging_.empty() ? snapshot_path() : staging_; }

  std::string cache_root_;
  std::string repo_id_;
  std::string repo_dir_;
  std::string revision_ = "master";
  std::string staging_;  // set while a new snapshot is assembled
};

}  // namespace bm::common
