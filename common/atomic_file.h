#pragma once
// Writing a file that another process (or the next start of this one) reads back whole: the content goes to a
// unique temp file beside the target, is fsynced, renamed over the target and the directory is fsynced, so a
// reader sees the old file or the new one and a crash or full disk never leaves a half-written file. Writes in
// one process are serialized, so two writers never interleave their renames out of order.
#include <sys/types.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace bm::common {

// `mode` is the file's exact permission bits (not masked by the umask): 0600 for state that holds secrets.
// The parent directory must exist. On failure the target is unchanged and no temp file is left.
absl::Status write_file_atomically(const std::string& path, std::string_view content, mode_t mode = 0600);

}  // namespace bm::common
