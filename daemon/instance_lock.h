#pragma once
// One bmserverd per state directory: two daemons restoring and rewriting the same served.json would fight over
// the same GPUs and undo each other's state. The lock is an flock on `bmserverd.lock` in the state dir, held
// for the daemon's lifetime and released by the kernel when the process dies (so a kill -9 leaves no stale
// lock); the file holds the holder's pid for the refusal message.
#include <string>

#include "absl/status/statusor.h"

namespace bm::daemon {

class InstanceLock {
 public:
  // FAILED_PRECONDITION naming the holder's pid when another process holds the lock.
  static absl::StatusOr<InstanceLock> acquire(const std::string& state_dir);

  InstanceLock(InstanceLock&& other) noexcept;
  InstanceLock& operator=(InstanceLock&& other) noexcept;
  InstanceLock(const InstanceLock&) = delete;
  InstanceLock& operator=(const InstanceLock&) = delete;
  ~InstanceLock();

  const std::string& path() const { return path_; }

 private:
  InstanceLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

}  // namespace bm::daemon
