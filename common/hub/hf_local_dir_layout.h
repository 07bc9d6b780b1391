#pragma once
#include <string>

#include "common/hub/snapshot_layout.h"

namespace bm::common {

// huggingface_hub's local_dir layout (hub-protocols §3.5) under DIR/{org}/{name}: plain files, and for each a
// `.cache/huggingface/download/{path}.metadata` (commit, etag, timestamp) written after the file is in place.
class HfLocalDirLayout : public SnapshotLayout {
 public:
  HfLocalDirLayout(std::string store_root, const std::string& repo_id);

  absl::Status begin(const RemoteSnapshot& snapshot) override;
  std::string snapshot_path() const override { return dir_; }
  std::string work_dir() const override { return dir_ + "/.cache/huggingface/download"; }
  bool has_file(const RemoteFile& file) const override;
  std::string lock_path(const RemoteFile& file) const override;
  std::string repo_lock_path() const override { return dir_ + "/.cache/huggingface/bm-repo.lock"; }
  std::string temp_prefix(const RemoteFile& file) const override;
  absl::Status place_file(const RemoteFile& file, const std::string& temp_path) override;
  absl::Status commit(const RemoteSnapshot& snapshot) override;
  std::map<std::string, std::string> current_files() const override;
  std::string current_commit() const override;
  absl::StatusOr<uint64_t> drop_previous(const std::string& previous_commit, const RemoteSnapshot& current) override;

 private:
  std::string metadata_path(const std::string& path) const { return work_dir() + "/" + path + ".metadata"; }

  std::string dir_;
  std::string commit_;
};

}  // namespace bm::common
