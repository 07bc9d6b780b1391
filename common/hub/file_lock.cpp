#include "common/hub/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"

namespace bm::common {

FileLock::~FileLock() {
  if (fd_ >= 0) {
    flock(fd_, LOCK_UN);
    close(fd_);
  }
}

FileLock::FileLock(FileLock&& other) noexcept : fd_(other.fd_) {
  other.fd_ = -1;
}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) {
      flock(fd_, LOCK_UN);
      close(fd_);
    }
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

absl::StatusOr<FileLock> FileLock::acquire(const std::string& path, std::chrono::milliseconds timeout,
                                           const std::atomic<bool>* cancel, Mode mode) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int operation = (mode == Mode::kShared ? LOCK_SH : LOCK_EX) | LOCK_NB;
  for (;;) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    // 0664 as filelock, so users of one group share a cache.
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0664);
    if (fd < 0) {
      return absl::PermissionDeniedError(absl::StrCat("cannot open the lock file ", path, ": ", std::strerror(errno)));
    }
    while (flock(fd, operation) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR) {
        int error = errno;
        close(fd);
        return absl::FailedPreconditionError(
            absl::StrCat("cannot lock ", path, ": ", std::strerror(error), " (does this filesystem support flock?)"));
      }
      if ((cancel != nullptr && cancel->load()) || std::chrono::steady_clock::now() >= deadline) {
        close(fd);
        if (cancel != nullptr && cancel->load()) return absl::CancelledError("the download was cancelled");
        return absl::DeadlineExceededError(
            absl::StrCat("another download holds ", path, "; wait for it to finish or stop it"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    struct stat held {
    }, current{};
    if (fstat(fd, &held) == 0 && stat(path.c_str(), &current) == 0 && held.st_dev == current.st_dev &&
        held.st_ino == current.st_ino) {
      FileLock lock;
      lock.fd_ = fd;
      return lock;
    }
    close(fd);  // the file was deleted or replaced while we waited for it
  }
}

}  // namespace bm::common
