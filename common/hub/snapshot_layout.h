#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "common/hub/remote_file.h"

namespace bm::common {

// Where and how one store layout keeps a snapshot. The downloader fetches into temp files named
// `{temp_prefix(file)}.{unique}.incomplete` while holding `lock_path(file)`, hands each verified file to
// `place_file`, and calls `commit` once every file is placed: only then does the snapshot become what readers
// see (HF: the snapshot folder and refs; local dir: the metadata; ModelScope: the snapshot folder).
class SnapshotLayout {
 public:
  virtual ~SnapshotLayout() = default;

  // Called once the remote snapshot is known, before anything is written.
  virtual absl::Status begin(const RemoteSnapshot& snapshot) = 0;
  virtual std::string snapshot_path() const = 0;
  // The folder temp files go to (checked for free space).
  virtual std::string work_dir() const = 0;
  // The file is already in the store with this content: no download.
  virtual bool has_file(const RemoteFile& file) const = 0;
  virtual std::string lock_path(const RemoteFile& file) const = 0;
  // Held shared by every download of the repo for its whole run and exclusively by a removal, so a removal
  // never deletes a tree a download is writing. Outside what a removal deletes where the layout allows.
  virtual std::string repo_lock_path() const = 0;
  virtual std::string temp_prefix(const RemoteFile& file) const = 0;
  // Moves a verified, synced temp file into place (the lock is held).
  virtual absl::Status place_file(const RemoteFile& file, const std::string& temp_path) = 0;
  virtual absl::Status commit(const RemoteSnapshot& snapshot) = 0;

  // What the store holds now for the revision (empty when nothing): path → content id (the etag, or empty
  // when the layout keeps none).
  virtual std::map<std::string, std::string> current_files() const = 0;
  // The commit the store holds now for the revision, or empty.
  virtual std::string current_commit() const = 0;
  // After a successful update: drop what the previous snapshot used that nothing else uses. Bytes freed.
  virtual absl::StatusOr<uint64_t> drop_previous(const std::string& previous_commit, const RemoteSnapshot& current) = 0;
};

}  // namespace bm::common
