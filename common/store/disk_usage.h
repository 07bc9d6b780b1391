#pragma once
// Size counting for the stores: bytes of unique files, as huggingface_hub's scan_cache_dir counts them.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace bm::common {

struct DiskUsage {
  uint64_t bytes = 0;      // apparent sizes (st_size) of unique resolved files
  uint64_t num_files = 0;  // unique resolved files
  int64_t last_modified_unix = 0;
  int64_t last_accessed_unix = 0;
  std::vector<std::string> dangling;    // links (relative to the folder) whose target is missing
  std::vector<std::string> unreadable;  // "path: reason" for what could not be read
};

// Walks `folder` without entering linked folders; a linked file counts as the file it resolves to, once,
// however many links name it. `skip(name)` drops entries by file name (e.g. ".DS_Store").
DiskUsage measure_tree(const std::filesystem::path& folder,
                       const std::function<bool(const std::string& name)>& skip = {});

}  // namespace bm::common
