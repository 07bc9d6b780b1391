#pragma once
#include <string>

#include "absl/status/status.h"

namespace bm::common {

// 8 random hex digits, the unique part of temp-file names (huggingface_hub uses uuid4()[:8] the same way).
std::string unique_suffix();
absl::Status make_dirs(const std::string& path);
// Writes `content` to a unique temp file beside `path`, fsyncs it and renames it over `path`.
absl::Status atomic_write_file(const std::string& path, const std::string& content);
absl::Status fsync_path(const std::string& path);
absl::Status rename_path(const std::string& from, const std::string& to);
// A relative symlink at `link` pointing to `target`, replacing what is there atomically.
absl::Status replace_symlink(const std::string& target, const std::string& link);
std::string read_small_file(const std::string& path);
// The process umask, read from /proc/self/status: calling umask() to read it would change it for every
// other thread of the daemon meanwhile (their files would be created world-writable).
unsigned process_umask();
// Gives a store file the mode huggingface_hub gives its blobs (0644 minus the umask), with fchmod on the file
// itself.
absl::Status set_store_file_mode(const std::string& path);

}  // namespace bm::common
