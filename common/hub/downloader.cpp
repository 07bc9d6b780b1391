#include "common/hub/downloader.h"

#include <sys/statvfs.h>

#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/hub/file_fetcher.h"
#include "common/hub/file_lock.h"
#include "common/hub/hf_api.h"
#include "common/hub/hf_cache_layout.h"
#include "common/hub/hf_local_dir_layout.h"
#include "common/hub/hub_listing.h"
#include "common/hub/ms_api.h"
#include "common/hub/ms_cache_layout.h"
#include "common/size_format.h"

namespace bm::common {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<SnapshotLayout> make_layout(const DownloadOptions& options) {
  switch (options.layout) {
    case StoreLayout::kHfCache:
      return std::make_unique<HfCacheLayout>(options.root, options.repo_id);
    case StoreLayout::kHfLocalDir:
      return std::make_unique<HfLocalDirLayout>(options.root, options.repo_id);
    case StoreLayout::kMsCache:
      return std::make_unique<MsCacheLayout>(options.root, options.repo_id);
  }
  return nullptr;
}

absl::StatusOr<RemoteSnapshot> resolve_and_list(const DownloadOptions& options, const HubSession& session,
                                                const ProgressCallback& on_progress, const std::atomic<bool>* cancel) {
  DownloadProgress report;
  report.phase = "resolving";
  if (on_progress) on_progress(report);
  switch (options.hub.kind) {
    case HubKind::kHuggingFace: {
      HfApi api(session);
      std::string revision = options.revision.empty() ? "main" : options.revision;
      absl::StatusOr<std::string> commit = api.resolve_commit(options.repo_id, revision, cancel);
      if (!commit.ok()) return commit.status();
      report.phase = "listing";
      report.commit = *commit;
      if (on_progress) on_progress(report);
      return api.list_snapshot(options.repo_id, revision, *commit, cancel);
    }
    case HubKind::kModelScope: {
      MsApi api(session);
      absl::StatusOr<std::string> revision = api.resolve_revision(options.repo_id, options.revision, cancel);
      if (!revision.ok()) return revision.status();
      report.phase = "listing";
      report.commit = *revision;
      if (on_progress) on_progress(report);
      return api.list_snapshot(options.repo_id, *revision, cancel);
    }
  }
  return absl::InternalError("unknown hub");
}

// What a caller asks for becomes paths too (refs/{revision}, the repo folder): checked before any request.
absl::Status check_request(const DownloadOptions& options) {
  size_t slash = options.repo_id.find('/');
  if (!is_safe_repo_path(options.repo_id) || slash == std::string::npos ||
      options.repo_id.find('/', slash + 1) != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("the repo id \"", options.repo_id, "\" is not of the form org/name"));
  }
  if (!options.revision.empty() && !is_safe_revision(options.revision)) {
    return absl::InvalidArgumentError(absl::StrCat("the revision \"", options.revision,
                                                   "\" is not a branch, tag or commit name (no \"..\", no leading "
                                                   "\"/\", no control characters)"));
  }
  return absl::OkStatus();
}

absl::Status check_free_space(const std::string& folder, uint64_t needed) {
  struct statvfs info {};
  if (statvfs(folder.c_str(), &info) != 0) return absl::OkStatus();  // unknown: let the writes tell
  uint64_t free_bytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(info.f_bavail), static_cast<uint64_t>(info.f_frsize), &free_bytes)) {
    return absl::OkStatus();  // more than 16 EiB free
  }
  if (free_bytes >= needed) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat("not enough disk space in ", folder, ": the download needs ",
                                                   format_size(needed), " more, ", format_size(free_bytes),
                                                   " are free; free some space or choose another store"));
}

// Fetches the files of `queue` with `num_workers` threads; the first error stops the others.
class ParallelFetch {
 public:
  ParallelFetch(const DownloadOptions& options, const HubSession& session, SnapshotLayout& layout,
                ProgressTracker& tracker, WriteBudget& budget, const std::atomic<bool>* user_cancel)
      : options_(options),
        session_(session),
        layout_(layout),
        tracker_(tracker),
        budget_(budget),
        user_cancel_(user_cancel) {}

  uint32_t num_fetched() const { return num_fetched_.load(); }

  absl::Status run(const std::vector<RemoteFile>& queue, const ProgressCallback& on_progress) {
    queue_ = &queue;
    int num_workers = std::max(1, std::min<int>(options_.max_parallel, static_cast<int>(queue.size())));
    std::vector<std::thread> workers;
    for (int i = 0; i < num_workers; ++i) workers.emplace_back([this] { work(); });
    while (finished_.load() < num_workers) {
      if (user_cancel_ != nullptr && user_cancel_->load()) stop_.store(true);
      if (on_progress) on_progress(tracker_.snapshot("downloading"));
      std::unique_lock<std::mutex> lock(mu_);
      done_cv_.wait_for(lock, options_.progress_interval, [&] { return finished_.load() >= num_workers; });
    }
    for (std::thread& worker : workers) worker.join();
    if (user_cancel_ != nullptr && user_cancel_->load()) {
      return absl::CancelledError(
          "the download was cancelled; partial files are kept and the next download resumes them");
    }
    return first_error_;
  }

 private:
  void work() {
    while (!stop_.load()) {
      size_t index = next_.fetch_add(1);
      if (index >= queue_->size()) break;
      absl::Status status = fetch_one((*queue_)[index]);
      if (!status.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        if (first_error_.ok()) first_error_ = status;
        stop_.store(true);
      }
    }
    finished_.fetch_add(1);
    done_cv_.notify_all();
  }

  absl::Status fetch_one(const RemoteFile& file) {
    absl::StatusOr<FileLock> lock = FileLock::acquire(layout_.lock_path(file), options_.lock_timeout, &stop_);
    if (!lock.ok()) return lock.status();
    // Another downloader may have finished this file while we waited for the lock.
    if (layout_.has_file(file)) {
      tracker_.skip_file(file.size);
      return absl::OkStatus();
    }
    FileFetcher fetcher(session_, tracker_, budget_, options_.hash_retries);
    absl::StatusOr<std::string> temp = fetcher.fetch(file, layout_.temp_prefix(file), &stop_);
    if (!temp.ok()) {
      if (absl::IsCancelled(temp.status()) && !should_keep_partial()) std::remove(fetcher.temp_path().c_str());
      return temp.status();
    }
    absl::Status placed = layout_.place_file(file, *temp);
    if (placed.ok()) num_fetched_.fetch_add(1);
    return placed;
  }

  // Partial files are worth keeping after a cancel or a network failure (the next run resumes them), not
  // after a full disk (free the space) or bad data from the hub.
  bool should_keep_partial() {
    if (user_cancel_ != nullptr && user_cancel_->load()) return true;
    std::lock_guard<std::mutex> lock(mu_);
    return first_error_.ok() || absl::IsUnavailable(first_error_) || absl::IsDeadlineExceeded(first_error_);
  }

  const DownloadOptions& options_;
  const HubSession& session_;
  SnapshotLayout& layout_;
  ProgressTracker& tracker_;
  WriteBudget& budget_;
  const std::atomic<bool>* user_cancel_;
  const std::vector<RemoteFile>* queue_ = nullptr;
  std::atomic<size_t> next_{0};
  std::atomic<int> finished_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable done_cv_;
  absl::Status first_error_;
  std::atomic<uint32_t> num_fetched_{0};
};

std::string summary(const DownloadResult& result) {
  if (result.up_to_date) return absl::StrCat(result.repo_id, " is up to date at ", result.commit, ".");
  std::string text = absl::StrCat(result.repo_id, " ", result.previous_commit.empty() ? "downloaded" : "updated",
                                  " at ", result.commit);
  if (!result.previous_commit.empty() && result.previous_commit != result.commit) {
    absl::StrAppend(&text, " (was ", result.previous_commit, ")");
  }
  absl::StrAppend(&text, ": ", result.files_fetched, " of ", result.files_total, " files fetched");
  if (!result.previous_commit.empty()) {
    absl::StrAppend(&text, "; ", result.added.size(), " added, ", result.changed.size(), " changed, ",
                    result.removed.size(), " removed");
    if (!result.changed.empty() || !result.added.empty()) {
      std::vector<std::string> names = result.changed;
      names.insert(names.end(), result.added.begin(), result.added.end());
      if (names.size() > 5) names.resize(5);
      absl::StrAppend(&text, " (", absl::StrJoin(names, ", "), ")");
    }
    if (result.bytes_freed > 0) absl::StrAppend(&text, "; freed ", format_size(result.bytes_freed));
  }
  absl::StrAppend(&text, ". Files are in ", result.snapshot_path, ".");
  return text;
}

}  // namespace

absl::StatusOr<FileLock> lock_for_removal(const DownloadOptions& options) {
  std::unique_ptr<SnapshotLayout> layout = make_layout(options);
  absl::StatusOr<FileLock> lock =
      FileLock::acquire(layout->repo_lock_path(), std::chrono::milliseconds(0), nullptr, FileLock::Mode::kExclusive);
  if (absl::IsDeadlineExceeded(lock.status())) {
    return absl::FailedPreconditionError(absl::StrCat(options.repo_id,
                                                      " is being downloaded; stop that download (Ctrl-C in its "
                                                      "`bmserver chat download`) or let it finish, then remove it"));
  }
  return lock;
}

absl::StatusOr<UpdateCheck> check_snapshot(const DownloadOptions& options, const std::atomic<bool>* cancel) {
  absl::Status request = check_request(options);
  if (!request.ok()) return request;
  HubSession session(options.hub, options.retry, options.timeouts, options.limits);
  absl::StatusOr<RemoteSnapshot> snapshot = resolve_and_list(options, session, nullptr, cancel);
  if (!snapshot.ok()) return snapshot.status();
  std::unique_ptr<SnapshotLayout> layout = make_layout(options);
  UpdateCheck check;
  check.remote_commit = snapshot->commit;
  check.current_commit = layout->current_commit();
  for (const RemoteFile& file : snapshot->files) {
    if (layout->has_file(file)) continue;
    ++check.files_to_fetch;
    if (__builtin_add_overflow(check.bytes_to_fetch, file.size, &check.bytes_to_fetch)) {
      check.bytes_to_fetch = UINT64_MAX;
    }
  }
  check.up_to_date = check.files_to_fetch == 0 && check.current_commit == check.remote_commit;
  return check;
}

absl::StatusOr<DownloadResult> download_snapshot(const DownloadOptions& options, const ProgressCallback& on_progress,
                                                 const std::atomic<bool>* cancel) {
  absl::Status request = check_request(options);
  if (!request.ok()) return request;
  HubSession session(options.hub, options.retry, options.timeouts, options.limits);
  absl::StatusOr<RemoteSnapshot> snapshot = resolve_and_list(options, session, on_progress, cancel);
  if (!snapshot.ok()) return snapshot.status();
  if (snapshot->files.empty()) {
    return absl::NotFoundError(absl::StrCat(options.repo_id, " has no files at ", snapshot->commit));
  }

  std::unique_ptr<SnapshotLayout> layout = make_layout(options);
  // Held until the snapshot is committed: a removal of this repo waits for it, or is refused.
  absl::StatusOr<FileLock> repo_lock =
      FileLock::acquire(layout->repo_lock_path(), options.lock_timeout, cancel, FileLock::Mode::kShared);
  if (absl::IsDeadlineExceeded(repo_lock.status())) {
    return absl::DeadlineExceededError(absl::StrCat(options.repo_id, " is being removed (", layout->repo_lock_path(),
                                                    " is locked); run the download again when that is done"));
  }
  if (!repo_lock.ok()) return repo_lock.status();
  DownloadResult result;
  result.repo_id = options.repo_id;
  result.commit = snapshot->commit;
  absl::Status status = layout->begin(*snapshot);
  if (!status.ok()) return status;
  std::map<std::string, std::string> previous_files = layout->current_files();
  result.previous_commit = layout->current_commit();
  result.snapshot_path = layout->snapshot_path();
  result.files_total = static_cast<uint32_t>(snapshot->files.size());
  result.bytes_total = snapshot->total_bytes();

  ProgressTracker tracker;
  tracker.set_totals(result.bytes_total, result.files_total);
  std::vector<RemoteFile> missing;
  uint64_t missing_bytes = 0;
  std::set<std::string> listed;
  for (const RemoteFile& file : snapshot->files) {
    listed.insert(file.path);
    bool present = layout->has_file(file);
    if (!present) {
      missing.push_back(file);
      if (__builtin_add_overflow(missing_bytes, file.size, &missing_bytes)) missing_bytes = UINT64_MAX;
    } else {
      tracker.skip_file(file.size);
    }
    // What changed at each path (a blob may be present because another path shares its content).
    auto previous = previous_files.find(file.path);
    if (previous == previous_files.end()) {
      if (!previous_files.empty()) result.added.push_back(file.path);
    } else if (previous->second.empty() ? !present : previous->second != file.etag) {
      result.changed.push_back(file.path);
    }
  }
  for (const auto& [path, id] : previous_files) {
    if (listed.count(path) == 0) result.removed.push_back(path);
  }
  status = check_free_space(layout->work_dir(), missing_bytes);
  if (!status.ok()) return status;

  WriteBudget budget;
  if (options.test_write_limit > 0) {
    budget.enabled = true;
    budget.bytes_left = options.test_write_limit;
  }
  ProgressCallback with_commit = [&](const DownloadProgress& progress) {
    if (!on_progress) return;
    DownloadProgress copy = progress;
    copy.commit = snapshot->commit;
    on_progress(copy);
  };
  ParallelFetch fetch(options, session, *layout, tracker, budget, cancel);
  status = fetch.run(missing, with_commit);
  if (!status.ok()) return status;
  result.files_fetched = fetch.num_fetched();

  with_commit(tracker.snapshot("committing"));
  status = layout->commit(*snapshot);
  if (!status.ok()) return status;
  if (options.drop_previous && !result.previous_commit.empty()) {
    absl::StatusOr<uint64_t> freed = layout->drop_previous(result.previous_commit, *snapshot);
    if (!freed.ok()) return freed.status();
    result.bytes_freed = *freed;
  }
  result.up_to_date = missing.empty() && result.previous_commit == result.commit && result.removed.empty();
  result.message = summary(result);
  DownloadProgress done = tracker.snapshot(result.up_to_date ? "up-to-date" : "done");
  done.commit = result.commit;
  done.message = result.message;
  done.snapshot_path = result.snapshot_path;
  if (on_progress) on_progress(done);
  return result;
}

}  // namespace bm::common
