#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace bm::common {

// One file of a repository at a resolved commit, as the hub lists it.
struct RemoteFile {
  std::string path;  // repo-relative, '/'-separated, validated (no "..", not absolute)
  uint64_t size = 0;
  std::string sha256;  // hex content hash when the hub gives one (HF: LFS files; ModelScope: every file)
  std::string etag;    // HF blob name: sha256 for LFS files, the git blob sha1 otherwise
  std::string url;     // where to GET it, pinned to the commit
};

struct RemoteSnapshot {
  std::string repo_id;
  std::string revision;  // what was asked for ("main", a tag, a commit)
  std::string commit;    // HF: the 40-hex commit; ModelScope: the branch or tag (its snapshot folder name)
  std::vector<RemoteFile> files;

  uint64_t total_bytes() const {
    uint64_t total = 0;
    for (const RemoteFile& file : files) total += file.size;
    return total;
  }
};

// A repo path is safe when it stays inside the folder it is written to (hub-protocols §3.6).
bool is_safe_repo_path(const std::string& path);

}  // namespace bm::common
