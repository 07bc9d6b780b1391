#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace bm::common {

// One file of a repository at a resolved commit, as the hub lists it.
struct RemoteFile {
  std::string path;  // repo-relative, '/'-separated, validated (no "..", not absolute)
  uint64_t size = 0;
  // Every file has one digest to verify it by, both validated lower-case hex before anything is written.
  std::string sha256;    // content sha256 (HF: LFS files; ModelScope: every file)
  std::string git_sha1;  // HF non-LFS files: the git blob sha1, sha1("blob <size>\0" + content)
  std::string etag;      // blob name in a store: the sha256 when there is one, else the git blob sha1
  std::string url;       // where to GET it, pinned to the commit
};

struct RemoteSnapshot {
  std::string repo_id;
  std::string revision;  // what was asked for ("main", a tag, a commit)
  std::string commit;    // HF: the 40-hex commit; ModelScope: the branch or tag (its snapshot folder name)
  std::vector<RemoteFile> files;

  // Saturates rather than wraps (sizes are bounded when the listing is parsed, so it never needs to).
  uint64_t total_bytes() const {
    uint64_t total = 0;
    for (const RemoteFile& file : files) {
      if (__builtin_add_overflow(total, file.size, &total)) return UINT64_MAX;
    }
    return total;
  }
};

// A repo path is safe when it stays inside the folder it is written to (hub-protocols §3.6): relative,
// '/'-separated, no empty, "." or ".." segment, no backslash or control character, at most kMaxNameBytes.
bool is_safe_repo_path(const std::string& path);
// Exactly `digits` lower-case hex digits (40: a git sha1 or commit, 64: a sha256).
bool is_hex_digest(const std::string& text, size_t digits);

}  // namespace bm::common
