#include "common/store/local_store.h"

#include <gtest/gtest.h>

#include "common/store/model_store.h"
#include "tests/unit/common/temp_tree.h"

namespace bm::common {
namespace {

namespace fs = std::filesystem;
using testing::TempTree;

TEST(LocalStore, FolderWithConfigIsAModel) {
  TempTree tree;
  tree.write("Qwen/Qwen2.5-0.5B-Instruct/config.json", "{}");
  tree.write("Qwen/Qwen2.5-0.5B-Instruct/model.safetensors", "1234");
  tree.write("Qwen/Qwen2.5-0.5B-Instruct/.DS_Store", "ignored");
  tree.write("Qwen/Qwen2.5-0.5B-Instruct/.cache/huggingface/download/config.json.metadata",
             "0123456789abcdef0123456789abcdef01234567\netag\n1700000000.0\n");
  LocalStore store(tree.root().string() + "/");
  EXPECT_EQ(store.root(), tree.root().string());
  std::optional<StoredModel> model = store.find("Qwen/Qwen2.5-0.5B-Instruct");
  ASSERT_TRUE(model.has_value());
  EXPECT_EQ(model->state, StoredState::kDownloaded);
  EXPECT_EQ(model->num_files, 3u);  // the metadata counts, as in the original; .DS_Store does not
  EXPECT_EQ(model->revision, "0123456789abcdef0123456789abcdef01234567");
  EXPECT_EQ(model->snapshot_path, (tree.root() / "Qwen/Qwen2.5-0.5B-Instruct").string());
  ASSERT_TRUE(store.remove(*model).ok());
  EXPECT_FALSE(fs::exists(tree.root() / "Qwen/Qwen2.5-0.5B-Instruct"));
  EXPECT_TRUE(fs::exists(tree.root() / "Qwen"));
}

TEST(LocalStore, FolderWithoutConfigIsIncomplete) {
  TempTree tree;
  tree.write("Qwen/QwQ-32B/tokenizer.json", "{}");
  std::optional<StoredModel> model = LocalStore(tree.root().string()).find("Qwen/QwQ-32B");
  ASSERT_TRUE(model.has_value());
  EXPECT_EQ(model->state, StoredState::kIncomplete);
}

TEST(OpenModelStore, PicksTheStore) {
  StoreRoots roots;
  roots.hf_hub_cache = "/hf";
  roots.modelscope_cache = "/ms";
  roots.default_hub = "ms";
  EXPECT_EQ((*open_model_store("", "", roots))->kind(), "ms");
  EXPECT_EQ((*open_model_store("hf", "", roots))->root(), "/hf");
  EXPECT_EQ((*open_model_store("hf", "/models", roots))->kind(), "local");
  EXPECT_EQ(open_model_store("gh", "", roots).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(open_model_store("hf", "relative/dir", roots).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace bm::common
