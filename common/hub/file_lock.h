#pragma once
#include <atomic>
#include <chrono>
#include <string>

#include "absl/status/statusor.h"

namespace bm::common {

// An exclusive flock(2) on a lock file, the same lock huggingface_hub's `filelock` takes, so a Python
// downloader and ours never write one blob at once. Released (and the descriptor closed) on destruction; the
// lock file itself stays, as filelock leaves it.
class FileLock {
 public:
  // Downloads of one repo share its repo lock; a removal takes it exclusively.
  enum class Mode { kExclusive, kShared };

  FileLock() = default;
  ~FileLock();
  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  // Waits for the lock (polling, so cancel and the timeout are honoured); creates parent folders. A lock file
  // deleted (by a removal) while we waited is not a lock: we retry on the file now at `path`.
  static absl::StatusOr<FileLock> acquire(const std::string& path, std::chrono::milliseconds timeout,
                                          const std::atomic<bool>* cancel, Mode mode = Mode::kExclusive);
  bool is_held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace bm::common
