#pragma once
#include <string>

#include "common/hub/snapshot_layout.h"

namespace bm::common {

// The huggingface_hub cache (hub-protocols §2): blobs/{etag}, snapshots/{commit}/{path} → ../../blobs/{etag},
// refs/{revision}, locks under .locks/. The snapshot folder is built beside it (.bm-staging/, same depth so
// the relative links are the same) and renamed in whole, so a reader never sees a half-linked snapshot.
class HfCacheLayout : public SnapshotLayout {
 public:
  HfCacheLayout(std::string cache_root, std::string repo_id);

  absl::Status begin(const RemoteSnapshot& snapshot) override;
  std::string snapshot_path() const override;
  std::string work_dir() const override { return repo_dir_ + "/blobs"; }
  bool has_file(const RemoteFile& file) const override;
  std::string lock_path(const RemoteFile& file) const override;
  std::string repo_lock_path() const override;
  std::string temp_prefix(const RemoteFile& file) const override;
  absl::Status place_file(const RemoteFile& file, const std::string& temp_path) override;
  absl::Status commit(const RemoteSnapshot& snapshot) override;
  std::map<std::string, std::string> current_files() const override;
  std::string current_commit() const override;
  absl::StatusOr<uint64_t> drop_previous(const std::string& previous_commit, const RemoteSnapshot& current) override;

  static std::string repo_folder_name(const std::string& repo_id);

 private:
  std::string blob_path(const std::string& etag) const { return repo_dir_ + "/blobs/" + etag; }
  std::map<std::string, std::string> snapshot_files(const std::string& commit) const;

  std::string cache_root_;
  std::string repo_id_;
  std::string repo_dir_;
  std::string revision_ = "main";
  std::string commit_;
};

}  // namespace bm::common
