#include "common/hub/layout_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"

namespace bm::common {

namespace fs = std::filesystem;

std::string unique_suffix() {
  static thread_local std::mt19937_64 rng(std::random_device{}() ^ static_cast<uint64_t>(getpid()));
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t bits = rng();
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(kHex[(bits >> (4 * i)) & 15]);
  return out;
}

absl::Status make_dirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create the folder ", path, ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status fsync_path(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot open ", path, " to sync it: ", std::strerror(errno)));
  int rc = fsync(fd);
  int error = errno;
  close(fd);
  if (rc != 0) return absl::DataLossError(absl::StrCat("cannot sync ", path, ": ", std::strerror(error)));
  return absl::OkStatus();
}

absl::Status rename_path(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", from, " to ", to, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status atomic_write_file(const std::string& path, const std::string& content) {
  absl::Status status = make_dirs(fs::path(path).parent_path().string());
  if (!status.ok()) return status;
  // Small metadata (refs, local-dir records) beside the blobs: the mode huggingface_hub's files get.
  return common::write_file_atomically(path, content, 0644 & ~process_umask());
}

absl::Status replace_symlink(const std::string& target, const std::string& link) {
  absl::Status status = make_dirs(fs::path(link).parent_path().string());
  if (!status.ok()) return status;
  std::string temp = absl::StrCat(link, ".", unique_suffix(), ".tmp");
  if (symlink(target.c_str(), temp.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot create the link ", link, ": ", std::strerror(errno)));
  }
  status = rename_path(temp, link);
  if (!status.ok()) std::remove(temp.c_str());
  return status;
}

std::string read_small_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::string();
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

unsigned process_umask() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Umask:", 0) != 0) continue;
    try {
      return static_cast<unsigned>(std::stoul(line.substr(6), nullptr, 8)) & 0777;
    } catch (const std::exception&) {
      break;
    }
  }
  return 022;  // kernels before 4.7 do not say; the common default
}

absl::Status set_store_file_mode(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  int rc = fchmod(fd, 0644 & ~process_umask());
  int error = errno;
  close(fd);
  if (rc != 0)
    return absl::PermissionDeniedError(absl::StrCat("cannot set the mode of ", path, ": ", std::strerror(error)));
  return absl::OkStatus();
}

}  // namespace bm::common
