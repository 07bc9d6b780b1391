#include "common/store/disk_usage.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <set>

namespace bm::common {
namespace {

namespace fs = std::filesystem;

struct Walk {
  const fs::path& root;
  const std::function<bool(const std::string&)>& skip;
  DiskUsage usage;
  std::set<std::string> seen;

  void add_file(const fs::path& path) {
    std::error_code ec;
    fs::path resolved = fs::canonical(path, ec);
    if (ec) {
      usage.dangling.push_back(fs::relative(path, root, ec).string());
      return;
    }
    if (!seen.insert(resolved.string()).second) return;
    struct stat st {};
    if (::stat(resolved.c_str(), &st) != 0) {
      usage.unreadable.push_back(resolved.string() + ": " + std::strerror(errno));
      return;
    }
    if (!S_ISREG(st.st_mode)) return;
    usage.bytes += static_cast<uint64_t>(st.st_size);
    usage.num_files += 1;
    usage.last_modified_unix = std::max<int64_t>(usage.last_modified_unix, st.st_mtim.tv_sec);
    usage.last_accessed_unix = std::max<int64_t>(usage.last_accessed_unix, st.st_atim.tv_sec);
  }

  void visit(const fs::path& folder) {
    std::error_code ec;
    fs::directory_iterator it(folder, ec);
    if (ec) {
      usage.unreadable.push_back(folder.string() + ": " + ec.message());
      return;
    }
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      const fs::path& path = it->path();
      if (skip && skip(path.filename().string())) continue;
      std::error_code type_ec;
      fs::file_status link = fs::symlink_status(path, type_ec);
      if (fs::is_directory(link)) {
        visit(path);
      } else if (fs::is_symlink(link)) {
        // A linked folder is not walked (as Python's glob("**/*") does not), but a dangling link is reported.
        fs::file_status target = fs::status(path, type_ec);
        if (!fs::is_directory(target)) add_file(path);
      } else {
        add_file(path);
      }
    }
    if (ec) usage.unreadable.push_back(folder.string() + ": " + ec.message());
  }
};

}  // namespace

DiskUsage measure_tree(const fs::path& folder, const std::function<bool(const std::string&)>& skip) {
  Walk walk{folder, skip, {}, {}};
  walk.visit(folder);
  return std::move(walk.usage);
}

}  // namespace bm::common
