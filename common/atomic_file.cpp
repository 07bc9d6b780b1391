#include "common/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace bm::common {
namespace {

absl::Status errno_status(int error, const std::string& what) {
  std::string message = absl::StrCat(what, ": ", std::strerror(error));
  switch (error) {
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status write_all(int fd, std::string_view content, const std::string& path) {
  while (!content.empty()) {
    ssize_t n = ::write(fd, content.data(), content.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status(errno, absl::StrCat("cannot write ", path));
    content.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// The rename is durable only once the directory entry is on disk too.
absl::Status fsync_directory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_status(errno, absl::StrCat("cannot open directory ", dir));
  int rc = ::fsync(fd);
  int error = errno;
  ::close(fd);
  // Some filesystems (and /proc-like ones) refuse fsync on directories; the rename itself has happened.
  if (rc != 0 && error != EINVAL && error != EROFS) return errno_status(error, absl::StrCat("cannot sync ", dir));
  return absl::OkStatus();
}

}  // namespace

absl::Status write_file_atomically(const std::string& path, std::string_view content, mode_t mode) {
  static std::mutex write_mutex;
  std::lock_guard<std::mutex> lock(write_mutex);

  std::filesystem::path target(path);
  std::string dir = target.parent_path().empty() ? "." : target.parent_path().string();
  std::string temp = absl::StrCat(dir, "/.", target.filename().string(), ".XXXXXX");
  int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) return errno_status(errno, absl::StrCat("cannot create a temp file beside ", path));
  auto abandon = [&](absl::Status status) {
    ::close(fd);
    ::unlink(temp.c_str());
    return status;
  };
  if (::fchmod(fd, mode) != 0) return abandon(errno_status(errno, absl::StrCat("cannot set the mode of ", temp)));
  if (absl::Status s = write_all(fd, content, path); !s.ok()) return abandon(s);
  if (::fsync(fd) != 0) return abandon(errno_status(errno, absl::StrCat("cannot sync ", path)));
  if (::close(fd) != 0) {
    int error = errno;
    ::unlink(temp.c_str());
    return errno_status(error, absl::StrCat("cannot write ", path));
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    int error = errno;
    ::unlink(temp.c_str());
    return errno_status(error, absl::StrCat("cannot replace ", path));
  }
  return fsync_directory(dir);
}

}  // namespace bm::common
