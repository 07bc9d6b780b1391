#include "common/store/modelscope_cache.h"

#include <gtest/gtest.h>

#include "tests/unit/common/temp_tree.h"

namespace bm::common {
namespace {

namespace fs = std::filesystem;
using testing::TempTree;

constexpr char kRepoId[] = "Qwen/Qwen2.5-0.5B-Instruct";

StoreRoots roots_at(const TempTree& tree) {
  StoreRoots roots;
  roots.modelscope_cache = tree.root().string();
  roots.modelscope_cache_from_env = true;
  return roots;
}

TEST(ModelScopeCache, EscapesDotsAsModelscopeDoes) {
  EXPECT_EQ(modelscope_folder_name("Qwen2.5-0.5B-Instruct"), "Qwen2___5-0___5B-Instruct");
  EXPECT_EQ(modelscope_folder_name("QwQ-32B"), "QwQ-32B");
}

TEST(ModelScopeCache, ReadsTheSnapshotLayoutOfModelscope138) {
  TempTree tree;
  tree.write("models/Qwen--Qwen2.5-0.5B-Instruct/snapshots/master/config.json", "{}");
  tree.write("models/Qwen--Qwen2.5-0.5B-Instruct/snapshots/master/model.safetensors", "weights");
  ModelScopeCache cache(roots_at(tree));
  std::optional<StoredModel> model = cache.find(kRepoId);
  ASSERT_TRUE(model.has_value());
  EXPECT_EQ(model->state, StoredState::kDownloaded) << model->reason;
  EXPECT_EQ(model->revision, "master");
  EXPECT_EQ(model->size_on_disk, 9u);
  EXPECT_EQ(model->num_files, 2u);
  EXPECT_EQ(model->snapshot_path, (tree.root() / "models/Qwen--Qwen2.5-0.5B-Instruct/snapshots/master").string());
  ASSERT_TRUE(cache.remove(*model).ok());
  EXPECT_FALSE(fs::exists(tree.root() / "models/Qwen--Qwen2.5-0.5B-Instruct"));
}

TEST(ModelScopeCache, ReadsTheDottedLinkLayoutOfModelscope123) {
  TempTree tree;
  fs::path folder = tree.write("models/Qwen/Qwen2___5-0___5B-Instruct/config.json", "{}").parent_path();
  tree.write("models/Qwen/Qwen2___5-0___5B-Instruct/.mv", "Revision:v1.0.1,CreatedAt:1700000000");
  tree.write("models/Qwen/Qwen2___5-0___5B-Instruct/.msc", "pickle");
  tree.link("models/Qwen/Qwen2.5-0.5B-Instruct", folder.string());  // modelscope links absolutely
  ModelScopeCache cache(roots_at(tree));
  std::optional<StoredModel> model = cache.find(kRepoId);
  ASSERT_TRUE(model.has_value());
  EXPECT_EQ(model->state, StoredState::kDownloaded) << model->reason;
  EXPECT_EQ(model->revision, "v1.0.1");
  EXPECT_EQ(model->repo_path, folder.string());
  EXPECT_EQ(model->num_files, 3u);
  ASSERT_TRUE(cache.remove(*model).ok());
  EXPECT_FALSE(fs::exists(fs::symlink_status(tree.root() / "models/Qwen/Qwen2.5-0.5B-Instruct")));
  EXPECT_FALSE(fs::exists(folder));
  EXPECT_TRUE(fs::exists(tree.root() / "models/Qwen"));
}

TEST(ModelScopeCache, ReadsTheOldestLayout) {
  TempTree tree;
  tree.write("Qwen/Qwen2___5-0___5B-Instruct/config.json", "{}");
  std::optional<StoredModel> model = ModelScopeCache(roots_at(tree)).find(kRepoId);
  ASSERT_TRUE(model.has_value());
  EXPECT_EQ(model->state, StoredState::kDownloaded);
}

TEST(ModelScopeCache, FolderWithoutConfigIsIncomplete) {
  TempTree tree;
  tree.write("models/Qwen/QwQ-32B/model.safetensors", "w");
  std::optional<StoredModel> model = ModelScopeCache(roots_at(tree)).find("Qwen/QwQ-32B");
  ASSERT_TRUE(model.has_value());
  EXPECT_EQ(model->state, StoredState::kIncomplete);
}

TEST(ModelScopeCache, LinkOutOfTheRootIsUnlinkedNotFollowed) {
  TempTree tree, outside;
  outside.write("m/config.json", "{}");
  tree.link("models/Qwen/Qwen2.5-0.5B-Instruct", (outside.root() / "m").string());
  ModelScopeCache cache(roots_at(tree));
  std::optional<StoredModel> model = cache.find(kRepoId);
  ASSERT_TRUE(model.has_value());
  EXPECT_EQ(model->state, StoredState::kDownloaded);
  ASSERT_TRUE(cache.remove(*model).ok());
  EXPECT_TRUE(fs::exists(outside.root() / "m/config.json"));
  EXPECT_FALSE(cache.find(kRepoId).has_value());
}

TEST(ModelScopeCache, DefaultRootAlsoReadsTheNewLayoutBesideHub) {
  TempTree tree;
  tree.write("models/Qwen--QwQ-32B/snapshots/master/config.json", "{}");
  StoreRoots roots;
  roots.modelscope_cache = (tree.root() / "hub").string();
  roots.modelscope_cache_from_env = false;
  ModelScopeCache cache(roots);
  std::optional<StoredModel> model = cache.find("Qwen/QwQ-32B");
  ASSERT_TRUE(model.has_value());
  EXPECT_EQ(model->state, StoredState::kDownloaded);
  EXPECT_TRUE(cache.remove(*model).ok());
  EXPECT_FALSE(fs::exists(tree.root() / "models/Qwen--QwQ-32B"));
}

}  // namespace
}  // namespace bm::common
