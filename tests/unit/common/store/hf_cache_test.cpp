#include "common/store/hf_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "tests/unit/common/temp_tree.h"

namespace bm::common {
namespace {

namespace fs = std::filesystem;
using testing::TempTree;

constexpr char kCommit[] = "0123456789abcdef0123456789abcdef01234567";
constexpr char kOldCommit[] = "fedcba9876543210fedcba9876543210fedcba98";
constexpr char kRepo[] = "models--Qwen--Qwen2.5-0.5B-Instruct";
constexpr char kIndex[] = R"({"metadata": {}, "weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}})";

// Writes a blob and links it from snapshots/<commit>/<path> the way huggingface_hub does (relative link).
void add_file(const TempTree& tree, const std::string& commit, const std::string& path, const std::string& blob,
              const std::string& content) {
  tree.write(std::string(kRepo) + "/blobs/" + blob, content);
  std::string up = "../../";
  for (char c : path)
    if (c == '/') up += "../";
  tree.link(std::string(kRepo) + "/snapshots/" + commit + "/" + path, up + "blobs/" + blob);
}

void write_complete_repo(const TempTree& tree) {
  add_file(tree, kCommit, "config.json", "c1", "{}");
  add_file(tree, kCommit, "model.safetensors.index.json", "i1", kIndex);
  add_file(tree, kCommit, "model-1.safetensors", "w1", std::string(1000, 'x'));
  add_file(tree, kCommit, "model-2.safetensors", "w2", std::string(500, 'y'));
  tree.write(std::string(kRepo) + "/refs/main", kCommit);
}

StoredModel find(const TempTree& tree) {
  std::optional<StoredModel> found = HfCache(tree.root().string()).find("Qwen/Qwen2.5-0.5B-Instruct");
  EXPECT_TRUE(found.has_value());
  return found.value_or(StoredModel{});
}

TEST(HfCache, FolderNameJoinsTypeAndRepoId) {
  EXPECT_EQ(hf_repo_folder_name("Qwen/Qwen2.5-7B-Instruct"), "models--Qwen--Qwen2.5-7B-Instruct");
}

TEST(HfCache, AbsentRepoIsNothing) {
  TempTree tree;
  EXPECT_FALSE(HfCache(tree.root().string()).find("Qwen/Qwen2.5-0.5B-Instruct").has_value());
  EXPECT_FALSE(HfCache("/nonexistent/bm-store").find("Qwen/Qwen2.5-0.5B-Instruct").has_value());
  EXPECT_FALSE(HfCache("/nonexistent/bm-store").root_exists());
}

TEST(HfCache, CompleteSnapshotIsDownloaded) {
  TempTree tree;
  write_complete_repo(tree);
  StoredModel model = find(tree);
  EXPECT_EQ(model.state, StoredState::kDownloaded) << model.reason;
  EXPECT_EQ(model.revision, kCommit);
  EXPECT_EQ(model.snapshot_path, (tree.root() / kRepo / "snapshots" / kCommit).string());
  EXPECT_EQ(model.repo_path, (tree.root() / kRepo).string());
  EXPECT_EQ(model.size_on_disk, 2u + std::string(kIndex).size() + 1000 + 500);
  EXPECT_EQ(model.num_files, 4u);
  EXPECT_GT(model.last_modified_unix, 0);
}

TEST(HfCache, SizeCountsUniqueBlobsAcrossSnapshots) {
  TempTree tree;
  write_complete_repo(tree);
  add_file(tree, kOldCommit, "model-1.safetensors", "w1", std::string(1000, 'x'));  // shared blob
  add_file(tree, kOldCommit, "config.json", "c0", "{ }");
  StoredModel model = find(tree);
  EXPECT_EQ(model.num_files, 5u);
  EXPECT_EQ(model.size_on_disk, 2u + std::string(kIndex).size() + 1000 + 500 + 3);
}

TEST(HfCache, MissingIndexedWeightIsIncomplete) {
  TempTree tree;
  add_file(tree, kCommit, "config.json", "c1", "{}");
  add_file(tree, kCommit, "model.safetensors.index.json", "i1", kIndex);
  add_file(tree, kCommit, "model-1.safetensors", "w1", "x");
  tree.write(std::string(kRepo) + "/refs/main", kCommit);
  StoredModel model = find(tree);
  EXPECT_EQ(model.state, StoredState::kIncomplete);
  EXPECT_NE(model.reason.find("model-2.safetensors"), std::string::npos) << model.reason;
}

TEST(HfCache, MissingConfigIsIncomplete) {
  TempTree tree;
  add_file(tree, kCommit, "tokenizer.json", "t1", "{}");
  tree.write(std::string(kRepo) + "/refs/main", kCommit);
  StoredModel model = find(tree);
  EXPECT_EQ(model.state, StoredState::kIncomplete);
  EXPECT_NE(model.reason.find("config.json"), std::string::npos);
}

TEST(HfCache, DanglingLinkIsCorrupt) {
  TempTree tree;
  write_complete_repo(tree);
  tree.link(std::string(kRepo) + "/snapshots/" + kCommit + "/tokenizer.json", "../../blobs/gone");
  StoredModel model = find(tree);
  EXPECT_EQ(model.state, StoredState::kCorrupt);
  EXPECT_NE(model.reason.find("tokenizer.json"), std::string::npos) << model.reason;
}

TEST(HfCache, DanglingWeightLinkIsIncomplete) {
  TempTree tree;
  write_complete_repo(tree);
  fs::remove(tree.root() / kRepo / "blobs" / "w2");
  EXPECT_EQ(find(tree).state, StoredState::kIncomplete);
}

TEST(HfCache, RefWithTrailingNewlineIsTolerated) {
  TempTree tree;
  write_complete_repo(tree);
  tree.write(std::string(kRepo) + "/refs/main", std::string(kCommit) + "\n");
  StoredModel model = find(tree);
  EXPECT_EQ(model.state, StoredState::kDownloaded) << model.reason;
  EXPECT_EQ(model.revision, kCommit);
}

TEST(HfCache, BadRefsAreCorrupt) {
  TempTree tree;
  write_complete_repo(tree);
  tree.write(std::string(kRepo) + "/refs/main", "not-a-commit");
  EXPECT_EQ(find(tree).state, StoredState::kCorrupt);
  tree.write(std::string(kRepo) + "/refs/main", kOldCommit);
  StoredModel model = find(tree);
  EXPECT_EQ(model.state, StoredState::kCorrupt);
  EXPECT_NE(model.reason.find(kOldCommit), std::string::npos);
}

TEST(HfCache, WithoutRefsTheOnlySnapshotIsUsed) {
  TempTree tree;
  write_complete_repo(tree);
  fs::remove_all(tree.root() / kRepo / "refs");
  EXPECT_EQ(find(tree).state, StoredState::kDownloaded);
  add_file(tree, kOldCommit, "config.json", "c0", "{ }");
  EXPECT_EQ(find(tree).state, StoredState::kIncomplete);
}

TEST(HfCache, NoSnapshotsYetIsIncomplete) {
  TempTree tree;
  tree.write(std::string(kRepo) + "/blobs/abc.incomplete", "partial");
  EXPECT_EQ(find(tree).state, StoredState::kIncomplete);
}

TEST(HfCache, RepoThatIsAFileIsCorrupt) {
  TempTree tree;
  tree.write(kRepo, "oops");
  EXPECT_EQ(find(tree).state, StoredState::kCorrupt);
}

TEST(HfCache, UnreadableSnapshotIsCorrupt) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads every folder";
  TempTree tree;
  write_complete_repo(tree);
  fs::permissions(tree.root() / kRepo / "snapshots" / kCommit, fs::perms::none);
  StoredModel model = find(tree);
  EXPECT_EQ(model.state, StoredState::kCorrupt);
  EXPECT_NE(model.reason.find("cannot read"), std::string::npos);
}

TEST(HfCache, UnreadableRepoFolderIsCorrupt) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads every folder";
  TempTree tree;
  write_complete_repo(tree);
  fs::permissions(tree.root() / kRepo, fs::perms::none);
  StoredModel model = find(tree);
  EXPECT_EQ(model.state, StoredState::kCorrupt);
  EXPECT_NE(model.reason.find("cannot read"), std::string::npos) << model.reason;
}

TEST(HfCache, RemoveDeletesRepoAndLocksOnly) {
  TempTree tree;
  write_complete_repo(tree);
  tree.write(std::string(".locks/") + kRepo + "/c1.lock", "");
  tree.write(".locks/models--Other--Repo/x.lock", "");
  tree.write("models--Other--Repo/refs/main", kCommit);
  HfCache cache(tree.root().string());
  StoredModel model = find(tree);
  ASSERT_EQ(model.remove_paths.size(), 2u);
  ASSERT_TRUE(cache.remove(model).ok());
  EXPECT_FALSE(fs::exists(tree.root() / kRepo));
  EXPECT_FALSE(fs::exists(tree.root() / ".locks" / kRepo));
  EXPECT_TRUE(fs::exists(tree.root() / ".locks/models--Other--Repo/x.lock"));
  EXPECT_TRUE(fs::exists(tree.root() / "models--Other--Repo/refs/main"));
  EXPECT_EQ(std::distance(fs::directory_iterator(tree.root()), fs::directory_iterator()),
            2);  // nothing left aside
  EXPECT_FALSE(cache.find("Qwen/Qwen2.5-0.5B-Instruct").has_value());
}

TEST(HfCache, RemoveNeverFollowsALinkOutOfTheRoot) {
  TempTree outside;
  outside.write("precious/config.json", "{}");
  TempTree tree;
  tree.link(kRepo, (outside.root() / "precious").string());
  tree.write("models--Qwen--Other/snapshots/x/config.json", "{}");
  tree.link("models--Qwen--Other/snapshots/x/escape", (outside.root() / "precious").string());
  HfCache cache(tree.root().string());
  StoredModel model = find(tree);
  ASSERT_TRUE(cache.remove(model).ok());
  EXPECT_FALSE(fs::exists(fs::symlink_status(tree.root() / kRepo)));
  EXPECT_TRUE(fs::exists(outside.root() / "precious/config.json"));
  std::optional<StoredModel> other = cache.find("Qwen/Other");
  ASSERT_TRUE(other.has_value());
  ASSERT_TRUE(cache.remove(*other).ok());
  EXPECT_TRUE(fs::exists(outside.root() / "precious/config.json"));
}

TEST(HfCache, RemoveRefusesPathsOutsideTheRoot) {
  TempTree tree, outside;
  outside.write("m/config.json", "{}");
  StoredModel model;
  model.remove_paths = {(outside.root() / "m").string()};
  EXPECT_EQ(HfCache(tree.root().string()).remove(model).code(), absl::StatusCode::kFailedPrecondition);
  model.remove_paths = {(tree.root() / ".." / fs::path(outside.root()).filename() / "m").string()};
  EXPECT_FALSE(HfCache(tree.root().string()).remove(model).ok());
  EXPECT_TRUE(fs::exists(outside.root() / "m/config.json"));
}

}  // namespace
}  // namespace bm::common
