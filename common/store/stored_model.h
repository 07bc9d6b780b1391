#pragma once
// What a store holds of one repo: its state, where it is, how big it is, and what removing it deletes.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bm::common {

enum class StoredState {
  kDownloaded,  // servable: config.json and every weight file the index lists
  kIncomplete,  // some files are missing (a download in progress or interrupted)
  kCorrupt,     // the layout is broken (dangling links, bad refs, unreadable folders)
};
std::string_view stored_state_name(StoredState state);  // "downloaded" | "incomplete" | "corrupt"

struct StoredModel {
  StoredState state = StoredState::kCorrupt;
  std::string reason;         // a sentence when not downloaded
  uint64_t size_on_disk = 0;  // bytes of unique files
  uint64_t num_files = 0;
  std::string revision;       // commit (HF), revision (ModelScope), or what a local-dir download recorded
  std::string repo_path;      // models--org--name, models/org/name(___), or DIR/org/name
  std::string snapshot_path;  // the folder serving reads; empty when there is none
  int64_t last_modified_unix = 0;
  int64_t last_accessed_unix = 0;
  // Everything `remove` deletes (links are unlinked, never followed); each lies inside the store root.
  std::vector<std::string> remove_paths;
};

}  // namespace bm::common
