#include "engine/vision/processor_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/engine/vision/vision_fixtures.h"

namespace bm::engine::vision {
namespace {

using ::testing::HasSubstr;

TEST(ProcessorConfigTest, ReadsTheQwen25VlFiles) {
  bool any = false;
  for (const char* name : {"Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct"}) {
    const auto dir = testing::shared_models() / name;
    if (!std::filesystem::exists(dir / "preprocessor_config.json")) continue;
    any = true;
    auto config = load_processor_config(dir);
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->min_pixels, 3136);
    EXPECT_EQ(config->max_pixels, 12845056);
    EXPECT_EQ(config->patch_size, 14);
    EXPECT_EQ(config->temporal_patch_size, 2);
    EXPECT_EQ(config->merge_size, 2);
    EXPECT_EQ(config->factor(), 28);
    EXPECT_EQ(config->image_mean[0], 0.48145466f);
    EXPECT_EQ(config->image_std[2], 0.27577711f);
    EXPECT_EQ(config->rescale_factor, 1.0 / 255.0);
  }
  if (!any) GTEST_SKIP() << "shared/models has no Qwen2.5-VL preprocessor_config.json (BMSERVER_SHARED_MODELS)";
}

TEST(ProcessorConfigTest, SizeKeysAndOverrides) {
  auto sized = parse_processor_config(R"({"size": {"shortest_edge": 100, "longest_edge": 5000}})", "t");
  ASSERT_TRUE(sized.ok()) << sized.status();
  EXPECT_EQ(sized->min_pixels, 100);
  EXPECT_EQ(sized->max_pixels, 5000);
  // min_pixels / max_pixels win over size, as in Qwen2VLImageProcessor.__init__.
  auto both =
      parse_processor_config(R"({"size": {"shortest_edge": 100, "longest_edge": 5000}, "max_pixels": 9000})", "t");
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(both->max_pixels, 9000);
  auto defaults = parse_processor_config("{}", "t");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->max_pixels, 28 * 28 * 1280);
}

TEST(ProcessorConfigTest, RefusesWhatItCannotHonour) {
  EXPECT_THAT(parse_processor_config("[1]", "p.json").status().message(), HasSubstr("p.json: not a JSON object"));
  EXPECT_THAT(parse_processor_config(R"({"do_normalize": false})", "p").status().message(), HasSubstr("do_normalize"));
  EXPECT_THAT(parse_processor_config(R"({"resample": 2})", "p").status().message(), HasSubstr("bicubic"));
  EXPECT_THAT(parse_processor_config(R"({"patch_size": 0})", "p").status().message(), HasSubstr("positive"));
  EXPECT_THAT(parse_processor_config(R"({"image_std": [1, 0, 1]})", "p").status().message(), HasSubstr("zero"));
  EXPECT_THAT(parse_processor_config(R"({"image_mean": [1, 2]})", "p").status().message(), HasSubstr("3 numbers"));
  EXPECT_THAT(parse_processor_config(R"({"min_pixels": 10, "max_pixels": 5})", "p").status().message(),
              HasSubstr("above max_pixels"));
  EXPECT_THAT(parse_processor_config(R"({"image_processor_type": "CLIPImageProcessor"})", "p").status().message(),
              HasSubstr("not the Qwen2-VL one"));
}

}  // namespace
}  // namespace bm::engine::vision
