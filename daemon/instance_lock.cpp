#include "daemon/instance_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace bm::daemon {
namespace {

constexpr const char* kLockFileName = "bmserverd.lock";

// The holder writes its pid right after locking; a reader racing that write sees an empty file.
std::string holder_pid(int fd) {
  char buffer[32] = {};
  ssize_t n = ::pread(fd, buffer, sizeof buffer - 1, 0);
  if (n <= 0) return "";
  std::string text(absl::StripAsciiWhitespace(absl::string_view(buffer, static_cast<size_t>(n))));
  int64_t pid = 0;
  return absl::SimpleAtoi(text, &pid) && pid > 0 ? text : "";
}

}  // namespace

absl::StatusOr<InstanceLock> InstanceLock::acquire(const std::string& state_dir) {
  std::string path = (std::filesystem::path(state_dir) / kLockFileName).string();
  // Never truncated on open: the content is the holder's pid, which a refused second daemon reads.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return absl::PermissionDeniedError(absl::StrCat("cannot open the lock file ", path, ": ", std::strerror(errno)));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int error = errno;
    std::string pid = error == EWOULDBLOCK ? holder_pid(fd) : "";
    ::close(fd);
    if (error != EWOULDBLOCK)
      return absl::InternalError(absl::StrCat("cannot lock ", path, ": ", std::strerror(error)));
    return absl::FailedPreconditionError(absl::StrCat("state dir ", state_dir, " is in use by another bmserverd (",
                                                      pid.empty() ? "pid unknown" : "pid " + pid, ", holding ", path,
                                                      "); stop it first or give this one another --state-dir"));
  }
  std::string pid = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    int error = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot write the lock file ", path, ": ", std::strerror(error)));
  }
  return InstanceLock(fd, std::move(path));
}

InstanceLock::InstanceLock(InstanceLock&& other) noexcept : fd_(other.fd_), path_(std::move(other.path_)) {
  other.fd_ = -1;
}

InstanceLock& InstanceLock::operator=(InstanceLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    other.fd_ = -1;
  }
  return *this;
}

InstanceLock::~InstanceLock() {
  // The file stays: a daemon starting now may already have opened this inode, and unlinking it would let that one
  // and a later one lock two different files. Closing releases the lock.
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace bm::daemon
