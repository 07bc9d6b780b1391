#include "common/store/model_store.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/store/hf_cache.h"
#include "common/store/local_store.h"
#include "common/store/modelscope_cache.h"

namespace bm::common {
namespace {

namespace fs = std::filesystem;

// True when `path`'s folder, with every link resolved, lies inside `root` (resolved): the last component
// itself is not resolved, because a link is unlinked rather than followed.
bool parent_inside(const fs::path& path, const fs::path& root) {
  std::error_code ec;
  fs::path real_root = fs::weakly_canonical(root, ec);
  if (ec) return false;
  fs::path real_parent = fs::weakly_canonical(path.parent_path(), ec);
  if (ec) return false;
  auto [root_end, parent_it] =
      std::mismatch(real_root.begin(), real_root.end(), real_parent.begin(), real_parent.end());
  return root_end == real_root.end();
}

std::string removal_name(const fs::path& path) {
  static std::atomic<uint64_t> counter{0};
  return absl::StrCat(".bmserver-removing-", path.filename().string(), "-", ::getpid(), "-", counter++);
}

}  // namespace

std::string ModelStore::normalize_root(std::string root) {
  fs::path normal = fs::path(root).lexically_normal();
  if (normal.filename().empty() && normal.has_parent_path() && normal != normal.root_path())
    normal = normal.parent_path();
  return normal.string();
}

bool ModelStore::root_exists() const {
  std::error_code ec;
  return fs::is_directory(root_, ec);
}

std::optional<StoredModel> ModelStore::find(const std::string& repo_id) const {
  std::optional<StoredModel> model = inspect(repo_id);
  std::error_code ec;
  // Names are never renamed back: if repo_path is still there, it was there for the whole inspection.
  if (model && !fs::exists(fs::symlink_status(model->repo_path, ec))) return std::nullopt;
  return model;
}

absl::Status ModelStore::check_inside_roots(const std::string& path) const {
  fs::path p(path);
  if (!p.is_absolute() || p.filename().empty() || p.filename() == "." || p.filename() == "..")
    return absl::InternalError(absl::StrCat("refusing to delete ", path, ": not a plain absolute path"));
  if (parent_inside(p, root_)) return absl::OkStatus();
  for (const std::string& root : extra_roots_)
    if (parent_inside(p, root)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("refusing to delete ", path, ": it resolves outside the store root ", root_));
}

absl::Status ModelStore::remove(const StoredModel& model) const {
  for (const std::string& path : model.remove_paths)
    if (absl::Status inside = check_inside_roots(path); !inside.ok()) return inside;
  for (const std::string& path : model.remove_paths) {
    fs::path target(path);
    std::error_code ec;
    fs::file_status status = fs::symlink_status(target, ec);
    if (!fs::exists(status)) continue;  // already gone (a concurrent remove, or never there)
    if (fs::is_symlink(status)) {
      if (!fs::remove(target, ec) && ec)
        return absl::InternalError(absl::StrCat("cannot unlink ", path, ": ", ec.message()));
      continue;
    }
    fs::path moved = target.parent_path() / removal_name(target);
    fs::rename(target, moved, ec);
    if (ec) {
      if (ec == std::errc::no_such_file_or_directory) continue;
      return absl::InternalError(absl::StrCat("cannot move ", path, " aside for deletion: ", ec.message()));
    }
    fs::remove_all(moved, ec);  // remove_all unlinks links and never descends through them
    if (ec) return absl::InternalError(absl::StrCat("cannot delete ", moved.string(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ModelStore>> open_model_store(const std::string& hub, const std::string& local_dir,
                                                             const StoreRoots& roots) {
  if (!local_dir.empty()) {
    if (!fs::path(local_dir).is_absolute())
      return absl::InvalidArgumentError(absl::StrCat("local dir '", local_dir, "' is not an absolute path"));
    return std::unique_ptr<ModelStore>(new LocalStore(fs::path(local_dir).lexically_normal().string()));
  }
  std::string chosen = hub.empty() ? roots.default_hub : hub;
  if (chosen == "hf") return std::unique_ptr<ModelStore>(new HfCache(roots.hf_hub_cache));
  if (chosen == "ms") return std::unique_ptr<ModelStore>(new ModelScopeCache(roots));
  return absl::InvalidArgumentError(absl::StrCat("hub '", chosen, "' is not one of hf, ms"));
}

}  // namespace bm::common
