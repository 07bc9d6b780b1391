#pragma once
#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/hub/download_progress.h"
#include "common/hub/hub_session.h"
#include "common/hub/remote_file.h"

namespace bm::common {

// Caps the bytes one download may write (tests simulate a full disk with it); 0 means no cap.
struct WriteBudget {
  std::atomic<uint64_t> bytes_left{0};
  bool enabled = false;
};

// Fetches one file into a verified temp file `{prefix}.{unique}.incomplete`. The caller holds the file's
// lock, so any other `{prefix}.*.incomplete` is an orphan of a dead process: the largest is adopted and
// resumed with `Range` (that is how a download survives a daemon restart). Transient failures are retried
// from the bytes already written; a size or sha256 mismatch discards the file and starts over (`hash_retries`
// times).
class FileFetcher {
 public:
  FileFetcher(const HubSession& session, ProgressTracker& tracker, WriteBudget& budget, int hash_retries)
      : session_(session), tracker_(tracker), budget_(budget), hash_retries_(hash_retries) {}

  absl::StatusOr<std::string> fetch(const RemoteFile& file, const std::string& temp_prefix,
                                    const std::atomic<bool>* cancel);
  // The temp file of the last fetch (it may hold partial bytes after a failure).
  const std::string& temp_path() const { return temp_path_; }

 private:
  // One pass over the transfer loop; returns the temp path once the bytes are all there (not yet verified).
  absl::Status transfer(const RemoteFile& file, const std::string& temp_path, const std::atomic<bool>* cancel);

  const HubSession& session_;
  ProgressTracker& tracker_;
  WriteBudget& budget_;
  int hash_retries_;
  std::string temp_path_;
};

}  // namespace bm::common
