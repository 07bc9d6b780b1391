// M-RoPE position ids against transformers' Qwen2_5_VLModel.get_rope_index: tests/tools/
// vision_make_encoder_fixtures.py recorded, in tests/data/models/qwen2_5_vl_vision/rope_index.json, the positions
// and delta for seven prompts (text only, an image inside text and at the start, two images and a video, videos
// whose temporal interval is a fraction (2/3 s · 2 tokens/s: truncation) or the default, a video taller than wide
// then an image). Integers: they must be identical.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/models/mrope_positions.h"
#include "nlohmann/json.hpp"

namespace bm::engine {
namespace {

nlohmann::json load_cases() {
  const char* source = std::getenv("BMSERVER_SOURCE_DIR");
  const auto path =
      std::filesystem::path(source != nullptr ? source : ".") / "tests/data/models/qwen2_5_vl_vision/rope_index.json";
  std::ifstream in(path);
  return nlohmann::json::parse(std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()));
}

std::vector<VisionGrid> grids_of(const nlohmann::json& list) {
  std::vector<VisionGrid> grids;
  for (const auto& g : list) grids.push_back(VisionGrid{g[0].get<int32_t>(), g[1].get<int32_t>(), g[2].get<int32_t>()});
  return grids;
}

TEST(MropePositionsTest, MatchesTransformers) {
  const nlohmann::json fixture = load_cases();
  ASSERT_EQ(fixture["cases"].size(), 7u);
  for (const auto& c : fixture["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const std::vector<int32_t> ids = c["input_ids"].get<std::vector<int32_t>>();
    const std::vector<VisionGrid> images = grids_of(c["image_grid_thw"]);
    const std::vector<VisionGrid> videos = grids_of(c["video_grid_thw"]);
    const std::vector<float> seconds =
        c["second_per_grid_ts"].is_null() ? std::vector<float>{} : c["second_per_grid_ts"].get<std::vector<float>>();
    MropeInputs inputs;
    inputs.image_token_id = fixture["image_token_id"];
    inputs.video_token_id = fixture["video_token_id"];
    inputs.spatial_merge_size = fixture["spatial_merge_size"];
    inputs.tokens_per_second = fixture["tokens_per_second"];
    inputs.image_grids = images;
    inputs.video_grids = videos;
    inputs.second_per_grid_ts = seconds;
    auto positions = mrope_positions(ids, inputs);
    ASSERT_TRUE(positions.ok()) << positions.status();
    for (int r = 0; r < 3; ++r) {
      EXPECT_EQ(positions->rows[r], c["position_ids"][r].get<std::vector<int64_t>>()) << "row " << r;
    }
    EXPECT_EQ(positions->delta, c["delta"].get<int64_t>());
  }
}

TEST(MropePositionsTest, MismatchedGridsAreAStatus) {
  const std::vector<VisionGrid> one = {{1, 4, 4}};
  const std::vector<VisionGrid> none;
  MropeInputs inputs;
  inputs.image_grids = one;
  const int32_t pad = inputs.image_token_id;
  // Four pad tokens for a 4 × 4 grid: right. Three: wrong. Two runs: a grid short. No run: a grid left over.
  EXPECT_TRUE(mrope_positions(std::vector<int32_t>{1, pad, pad, pad, pad, 2}, inputs).ok());
  for (const std::vector<int32_t>& ids :
       {std::vector<int32_t>{1, pad, pad, pad, 2}, std::vector<int32_t>{pad, pad, pad, pad, 7, pad, pad, pad, pad},
        std::vector<int32_t>{1, 2, 3}}) {
    auto positions = mrope_positions(ids, inputs);
    ASSERT_FALSE(positions.ok());
    EXPECT_EQ(positions.status().code(), absl::StatusCode::kInvalidArgument) << positions.status();
  }
  const std::vector<float> two_seconds = {1.0f, 1.0f};
  inputs.image_grids = none;
  inputs.video_grids = one;
  inputs.second_per_grid_ts = two_seconds;
  const int32_t video = inputs.video_token_id;
  EXPECT_EQ(mrope_positions(std::vector<int32_t>{video, video, video, video}, inputs).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace bm::engine
