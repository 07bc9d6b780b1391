#include "engine/model/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "engine/model/safetensors_writer.h"
#include "tests/unit/engine/model/test_files.h"

namespace bm::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::TempDir;
using testing::write_file;

void write_shard(const std::filesystem::path& path, const std::vector<std::string>& names) {
  static const std::vector<float> values = {1.0f, 2.0f};
  std::vector<TensorToWrite> tensors;
  for (const std::string& name : names) tensors.push_back({name, DType::kF32, {2}, std::as_bytes(std::span(values))});
  ASSERT_TRUE(write_safetensors(path, tensors).ok());
}

constexpr const char* kIndex = R"({"metadata":{"total_size":24},"weight_map":{
  "a.weight":"model-00001-of-00002.safetensors",
  "b.weight":"model-00001-of-00002.safetensors",
  "c.weight":"model-00002-of-00002.safetensors"}})";

TEST(CheckpointTest, OpensASingleFile) {
  TempDir dir;
  write_shard(dir.path() / "model.safetensors", {"x", "y"});
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::open(dir.path());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_THAT((*checkpoint)->tensor_names(), ElementsAre("x", "y"));
  ASSERT_NE((*checkpoint)->find("x"), nullptr);
  EXPECT_EQ((*checkpoint)->find("z"), nullptr);
}

TEST(CheckpointTest, OpensShardsThroughTheIndex) {
  TempDir dir;
  write_shard(dir.path() / "model-00001-of-00002.safetensors", {"a.weight", "b.weight"});
  write_shard(dir.path() / "model-00002-of-00002.safetensors", {"c.weight"});
  write_file(dir.path() / "model.safetensors.index.json", kIndex);
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::open(dir.path());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_THAT((*checkpoint)->tensor_names(), ElementsAre("a.weight", "b.weight", "c.weight"));
  EXPECT_EQ((*checkpoint)->files().size(), 2u);
  EXPECT_EQ((*checkpoint)->find("c.weight")->shape, std::vector<int64_t>{2});
}

TEST(CheckpointTest, AMissingShardIsNamed) {
  TempDir dir;
  write_shard(dir.path() / "model-00001-of-00002.safetensors", {"a.weight", "b.weight"});
  write_file(dir.path() / "model.safetensors.index.json", kIndex);
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::open(dir.path());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_TRUE(absl::IsNotFound(checkpoint.status()));
  EXPECT_THAT(checkpoint.status().message(), HasSubstr("model-00002-of-00002.safetensors"));
}

TEST(CheckpointTest, AnIndexEntryItsShardLacksIsNamed) {
  TempDir dir;
  write_shard(dir.path() / "model-00001-of-00002.safetensors", {"a.weight"});
  write_shard(dir.path() / "model-00002-of-00002.safetensors", {"c.weight"});
  write_file(dir.path() / "model.safetensors.index.json", kIndex);
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::open(dir.path());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_THAT(checkpoint.status().message(), HasSubstr("'b.weight'"));
}

TEST(CheckpointTest, RejectsShardNamesOutsideTheFolder) {
  TempDir dir;
  write_file(dir.path() / "model.safetensors.index.json", R"({"weight_map":{"a":"../evil.safetensors"}})");
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::open(dir.path());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_THAT(checkpoint.status().message(), HasSubstr("invalid shard name"));
  write_file(dir.path() / "model.safetensors.index.json", R"({"weight_map":{"a":"/etc/passwd"}})");
  EXPECT_FALSE(Checkpoint::open(dir.path()).ok());
}

TEST(CheckpointTest, RejectsAMalformedIndex) {
  TempDir dir;
  write_file(dir.path() / "model.safetensors.index.json", "{");
  EXPECT_THAT(Checkpoint::open(dir.path()).status().message(), HasSubstr("not a JSON object"));
  write_file(dir.path() / "model.safetensors.index.json", R"({"metadata":{}})");
  EXPECT_THAT(Checkpoint::open(dir.path()).status().message(), HasSubstr("weight_map"));
}

TEST(CheckpointTest, AFolderWithoutWeightsSaysWhatIsMissing) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<Checkpoint>> empty = Checkpoint::open(dir.path());
  ASSERT_FALSE(empty.ok());
  EXPECT_TRUE(absl::IsNotFound(empty.status()));
  EXPECT_THAT(empty.status().message(), HasSubstr("model.safetensors"));
  write_file(dir.path() / "pytorch_model.bin", "x");
  EXPECT_THAT(Checkpoint::open(dir.path()).status().message(), HasSubstr("only safetensors"));
}

TEST(CheckpointTest, ACorruptShardFailsTheWholeCheckpoint) {
  TempDir dir;
  write_file(dir.path() / "model.safetensors", testing::safetensors_bytes("{oops", ""));
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::open(dir.path());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_THAT(checkpoint.status().message(), HasSubstr("model.safetensors"));
}

}  // namespace
}  // namespace bm::engine
