#include "engine/model/generation_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "tests/unit/engine/model/test_files.h"

namespace bm::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::filesystem::path shared_models() {
  const char* dir = std::getenv("BMSERVER_SHARED_MODELS");
  return dir != nullptr ? std::filesystem::path(dir) : std::filesystem::path();
}

TEST(GenerationConfigTest, ReadsQwenDefaults) {
  const auto dir = shared_models() / "Qwen/Qwen2.5-7B-Instruct";
  if (!std::filesystem::exists(dir / "generation_config.json")) GTEST_SKIP() << "no shared models at " << dir;
  absl::StatusOr<GenerationConfig> config = read_generation_config(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->do_sample, true);
  EXPECT_FLOAT_EQ(*config->temperature, 0.7f);
  EXPECT_FLOAT_EQ(*config->top_p, 0.8f);
  EXPECT_EQ(config->top_k, 20);
  EXPECT_FLOAT_EQ(*config->repetition_penalty, 1.05f);
  EXPECT_THAT(config->eos_token_ids, ElementsAre(151645, 151643));
  EXPECT_EQ(config->bos_token_id, 151643);
  EXPECT_EQ(config->pad_token_id, 151643);
}

TEST(GenerationConfigTest, ReadsEveryGenerationConfigOfTheSharedModels) {
  const auto root = shared_models();
  if (!std::filesystem::exists(root)) GTEST_SKIP() << "no shared models at " << root;
  int count = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("generation_config", 0) != 0 || entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    absl::StatusOr<GenerationConfig> config = parse_generation_config(text, entry.path().string());
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_FALSE(config->eos_token_ids.empty()) << entry.path();
    ++count;
  }
  EXPECT_GE(count, 5);
}

TEST(GenerationConfigTest, DeepSeekLlamaHasOneEosAndNoTopK) {
  const auto path = shared_models() / "deepseek-ai/DeepSeek-R1-Distill-Llama-8B/generation_config.resaved.json";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no shared models at " << path;
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  absl::StatusOr<GenerationConfig> config = parse_generation_config(text, path.string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->eos_token_ids, ElementsAre(128001));
  EXPECT_FLOAT_EQ(*config->temperature, 0.6f);
  EXPECT_FLOAT_EQ(*config->top_p, 0.95f);
  EXPECT_FALSE(config->top_k.has_value());
  EXPECT_FALSE(config->repetition_penalty.has_value());
}

TEST(GenerationConfigTest, AFolderWithoutTheFileGivesNoDefaults) {
  testing::TempDir dir;
  absl::StatusOr<GenerationConfig> config = read_generation_config(dir.path());
  ASSERT_TRUE(config.ok());
  EXPECT_FALSE(config->temperature.has_value());
  EXPECT_TRUE(config->eos_token_ids.empty());
}

TEST(GenerationConfigTest, RejectsWrongTypesAndRanges) {
  EXPECT_THAT(parse_generation_config(R"({"temperature":"hot"})", "g.json").status().message(),
              HasSubstr("'temperature'"));
  EXPECT_THAT(parse_generation_config(R"({"eos_token_id":[1,"x"]})", "g.json").status().message(),
              HasSubstr("'eos_token_id'"));
  EXPECT_THAT(parse_generation_config(R"({"top_p":1.5})", "g.json").status().message(), HasSubstr("top_p"));
  EXPECT_THAT(parse_generation_config(R"({"temperature":-1})", "g.json").status().message(), HasSubstr("temperature"));
  EXPECT_THAT(parse_generation_config("[]", "g.json").status().message(), HasSubstr("g.json"));
}

}  // namespace
}  // namespace bm::engine
