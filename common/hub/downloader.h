#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/hub/download_progress.h"
#include "common/hub/file_lock.h"
#include "common/hub/http_client.h"
#include "common/hub/hub_config.h"
#include "common/hub/hub_limits.h"
#include "common/hub/hub_session.h"

namespace bm::common {

enum class StoreLayout {
  kHfCache,     // root = the HF hub cache (HF_HUB_CACHE …)
  kHfLocalDir,  // root = DIR; files go to DIR/{org}/{name}
  kMsCache,     // root = the ModelScope cache (MODELSCOPE_CACHE …)
};

struct DownloadOptions {
  HubConfig hub;
  std::string repo_id;   // "Qwen/Qwen2.5-7B-Instruct"
  std::string revision;  // empty: "main" (HF) / "master" (ModelScope)
  StoreLayout layout = StoreLayout::kHfCache;
  std::string root;
  int max_parallel = 8;
  int hash_retries = 3;
  RetryPolicy retry;
  HttpTimeouts timeouts;
  HubLimits limits;
  std::chrono::milliseconds lock_timeout{std::chrono::minutes(30)};
  std::chrono::milliseconds progress_interval{250};
  // Update semantics: once the new snapshot is complete, drop the previous one's unshared files.
  bool drop_previous = false;
  // Tests only: fail writes with "no space" after this many bytes (0: off).
  uint64_t test_write_limit = 0;
};

struct DownloadResult {
  std::string repo_id;
  std::string commit;
  std::string previous_commit;  // empty when nothing was there
  std::string snapshot_path;
  bool up_to_date = false;  // nothing needed fetching and the commit did not move
  uint32_t files_total = 0;
  uint32_t files_fetched = 0;
  uint64_t bytes_total = 0;
  uint64_t bytes_freed = 0;
  std::vector<std::string> added, changed, removed;
  std::string message;  // one sentence for the user
};

struct UpdateCheck {
  std::string current_commit;  // empty when the store holds nothing of the revision
  std::string remote_commit;
  uint32_t files_to_fetch = 0;
  uint64_t bytes_to_fetch = 0;
  bool up_to_date = false;
};

// Resolves and lists like a download, compares with the store, and writes nothing.
absl::StatusOr<UpdateCheck> check_snapshot(const DownloadOptions& options, const std::atomic<bool>* cancel);

// Downloads one repository snapshot: resolve the revision to a commit, list the files, fetch the missing ones
// in parallel (resumable, verified, each through a unique temp file and an atomic rename under the same lock
// files as the Python tools), and only then make the snapshot visible. Progress goes to `on_progress` from
// the calling thread; `cancel` stops everything and keeps partial files for a resume.
absl::StatusOr<DownloadResult> download_snapshot(const DownloadOptions& options, const ProgressCallback& on_progress,
                                                 const std::atomic<bool>* cancel);

// Takes the repo lock of `options`' store exclusively, without waiting: a model a download is writing cannot be
// removed (FAILED_PRECONDITION naming it). Hold the lock while removing.
absl::StatusOr<FileLock> lock_for_removal(const DownloadOptions& options);

}  // namespace bm::common
