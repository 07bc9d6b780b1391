#pragma once
// One place models live: the Hugging Face cache, the ModelScope cache, or a local store DIR/{org}/{name}
// (DESIGN §4). The daemon calls these; the CLI only renders what the daemon answers.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/store/store_roots.h"
#include "common/store/stored_model.h"

namespace bm::common {

class ModelStore {
 public:
  virtual ~ModelStore() = default;
  virtual std::string kind() const = 0;  // "hf" | "ms" | "local"
  const std::string& root() const { return root_; }
  bool root_exists() const;

  // What the store holds of repo_id ("org/name"), or nullopt when it holds nothing of it. Never fails: what
  // cannot be read is reported as a corrupt entry with the reason. A model removed while it is being looked
  // at is reported as gone, never as half there (remove renames it away before deleting).
  std::optional<StoredModel> find(const std::string& repo_id) const;

  // Deletes model.remove_paths: each is first renamed to a hidden sibling (so a concurrent reader sees the
  // model whole or gone), then deleted without following any link. Refuses paths outside the store's roots.
  absl::Status remove(const StoredModel& model) const;

 protected:
  // The backend's look at repo_id; find() re-checks afterwards that repo_path was not renamed away meanwhile.
  virtual std::optional<StoredModel> inspect(const std::string& repo_id) const = 0;

  explicit ModelStore(std::string root, std::vector<std::string> extra_roots = {})
      : root_(normalize_root(std::move(root))), extra_roots_(std::move(extra_roots)) {}
  static std::string normalize_root(std::string root);  // lexically normal, no trailing slash

 private:
  absl::Status check_inside_roots(const std::string& path) const;

  std::string root_;
  std::vector<std::string> extra_roots_;  // other roots this store reads and may delete from
};

// hub: "hf" | "ms" | "" (roots.default_hub); a non-empty local_dir overrides the hub. INVALID_ARGUMENT for an
// unknown hub or a local_dir that is not absolute.
absl::StatusOr<std::unique_ptr<ModelStore>> open_model_store(const std::string& hub, const std::string& local_dir,
                                                             const StoreRoots& roots);

}  // namespace bm::common
