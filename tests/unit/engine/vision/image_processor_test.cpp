// Pixel values against transformers' PIL-based Qwen2VLImageProcessor (fixtures: tests/data/vision, made by
// tests/tools/vision_make_preprocessing_fixtures.py with the Qwen2.5-VL-3B preprocessor_config.json).
//
// Bound: grid_thw, token counts and shapes must be identical. Pixel values may differ only by resampling
// rounding, i.e. by whole uint8 levels of the resized image (a level is 1 / 255 / std in normalized units);
// kMaxLevels is the bound this implementation holds. Measured over all 26 cases (every value of the small
// images, a 2048-value stride of the others): 0 levels, every compared float bit-identical, because
// bicubic_resampler.cpp performs PIL's fixed-point arithmetic step by step. The bound is kept at 0 so that any
// drift fails; a PIL version that changed its resampler would show here first.
#include "engine/vision/image_processor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iostream>

#include "engine/vision/bicubic_resampler.h"
#include "engine/vision/image_decoder.h"
#include "tests/unit/engine/vision/vision_fixtures.h"

namespace bm::engine::vision {
namespace {

using testing::expected;
using testing::fixture_dir;
using ::testing::HasSubstr;
using testing::read_bytes;

constexpr int kMaxLevels = 0;

// What the fixtures were made with: the Qwen2.5-VL preprocessor_config.json (3B and 7B are identical).
ProcessorConfig qwen25_vl_config() {
  ProcessorConfig config;
  config.min_pixels = 3136;
  config.max_pixels = 12845056;
  return config;
}

std::vector<float> read_floats(const std::filesystem::path& path) {
  const std::string bytes = read_bytes(path);
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

TEST(ImageProcessorTest, MatchesTransformersPixelValues) {
  const ProcessorConfig config = qwen25_vl_config();
  const int64_t per_channel = int64_t{config.temporal_patch_size} * config.patch_size * config.patch_size;
  int num_cases = 0;
  for (const auto& c : expected()["cases"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    auto image = decode_image(read_bytes(fixture_dir() / "images" / c["image"].get<std::string>()));
    ASSERT_TRUE(image.ok()) << image.status();
    std::optional<PixelRange> range;
    if (c.contains("min_pixels")) range = PixelRange{c["min_pixels"], c["max_pixels"]};
    auto media = preprocess_image(*image, config, range);
    ASSERT_TRUE(media.ok()) << media.status();
    EXPECT_EQ(media->grid_thw[0], c["grid_thw"][0].get<int64_t>());
    EXPECT_EQ(media->grid_thw[1], c["grid_thw"][1].get<int64_t>());
    EXPECT_EQ(media->grid_thw[2], c["grid_thw"][2].get<int64_t>());
    EXPECT_EQ(media->num_tokens, c["num_tokens"].get<int64_t>());
    EXPECT_EQ(num_image_tokens(image->height, image->width, config, range).value_or(-1), media->num_tokens);
    ASSERT_EQ(media->num_patches, c["shape"][0].get<int64_t>());
    ASSERT_EQ(media->patch_dim, c["shape"][1].get<int64_t>());

    const std::vector<float> want = read_floats(fixture_dir() / c["values"]["file"].get<std::string>());
    const auto stride = c["values"]["stride"].get<size_t>();
    ASSERT_EQ(want.size(), c["values"]["count"].get<size_t>());
    int max_levels = 0;
    size_t identical = 0;
    for (size_t k = 0; k < want.size(); ++k) {
      const size_t index = k * stride;
      ASSERT_LT(index, media->pixel_values.size());
      const float got = media->pixel_values[index];
      const auto channel = static_cast<size_t>((index % media->patch_dim) / per_channel);
      const double levels = std::abs(double{got} - want[k]) * config.image_std[channel] * 255.0;
      max_levels = std::max(max_levels, static_cast<int>(std::lround(levels)));
      identical += got == want[k] ? 1 : 0;
    }
    std::cout << "[ vision ] " << name << ": " << want.size() << " values compared, max |diff| " << max_levels
              << " uint8 levels, " << identical << " bit-identical\n";
    EXPECT_LE(max_levels, kMaxLevels);

    // Summary statistics over all values (the strided cases compare only a subsample above).
    double sum = 0, sum_abs = 0;
    float lo = media->pixel_values[0], hi = lo;
    for (const float v : media->pixel_values) {
      sum += v;
      sum_abs += std::abs(v);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    const double n = static_cast<double>(media->pixel_values.size());
    // A level is at most 1 / 255 / min(std) ~= 0.0150 normalized; 1e-6 covers the order of summation.
    const double tolerance = kMaxLevels / 255.0 / 0.26 + 1e-6;
    EXPECT_NEAR(sum / n, c["stats"]["mean"].get<double>(), tolerance);
    EXPECT_NEAR(sum_abs / n, c["stats"]["mean_abs"].get<double>(), tolerance);
    EXPECT_NEAR(lo, c["stats"]["min"].get<double>(), tolerance);
    EXPECT_NEAR(hi, c["stats"]["max"].get<double>(), tolerance);
    ++num_cases;
  }
  EXPECT_GE(num_cases, 20);
}

// Patch order: row = (t, block row, block column, row in block, column in block), column = (channel, frame, y, x).
TEST(ImageProcessorTest, PatchesFollowTheProcessorsOrder) {
  ProcessorConfig config;
  // Identity normalization so values are the uint8 levels / 255 and positions can be read back.
  config.image_mean = {0, 0, 0};
  config.image_std = {1, 1, 1};
  RgbImage image;
  image.width = 56;
  image.height = 84;
  image.pixels.resize(56 * 84 * 3);
  for (int y = 0; y < 84; ++y) {
    for (int x = 0; x < 56; ++x) {
      for (int c = 0; c < 3; ++c) image.pixels[(y * 56 + x) * 3 + c] = static_cast<uint8_t>((y * 3 + x + c * 7) % 256);
    }
  }
  auto media = patchify_frames({image}, config);
  ASSERT_TRUE(media.ok()) << media.status();
  EXPECT_EQ(media->grid_thw, (std::array<int64_t, 3>{1, 6, 4}));
  EXPECT_EQ(media->num_patches, 24);
  EXPECT_EQ(media->patch_dim, 1176);
  EXPECT_EQ(media->num_tokens, 6);
  for (int64_t row = 0; row < 24; ++row) {
    const int64_t bh = row / 8, bw = (row / 4) % 2, mh = (row / 2) % 2, mw = row % 2;
    for (int64_t col = 0; col < 1176; col += 37) {
      const int64_t c = col / 392, py = (col / 14) % 14, px = col % 14;
      const int64_t y = (bh * 2 + mh) * 14 + py, x = (bw * 2 + mw) * 14 + px;
      const float want = static_cast<float>(static_cast<double>(image.pixels[(y * 56 + x) * 3 + c]) / 255.0);
      ASSERT_EQ(media->pixel_values[row * 1176 + col], want) << row << "," << col;
    }
  }
}

TEST(ImageProcessorTest, PerRequestBoundsOverrideTheConfig) {
  const ProcessorConfig config = qwen25_vl_config();
  EXPECT_EQ(*num_image_tokens(480, 640, config), 391);
  EXPECT_EQ(*num_image_tokens(480, 640, config, PixelRange{3136, 50176}), 54);
  EXPECT_THAT(num_image_tokens(480, 640, config, PixelRange{5000, 4000}).status().message(),
              HasSubstr("must be positive and in order"));
  EXPECT_THAT(num_image_tokens(1, 500, config).status().message(), HasSubstr("aspect ratio"));
}

TEST(ImageProcessorTest, RefusesFramesOffTheGrid) {
  RgbImage image;
  image.width = 30;
  image.height = 28;
  image.pixels.resize(30 * 28 * 3);
  EXPECT_THAT(patchify_frames({image}, ProcessorConfig{}).status().message(), HasSubstr("not a positive multiple"));
  EXPECT_FALSE(patchify_frames({}, ProcessorConfig{}).ok());
}

TEST(BicubicResamplerTest, SameSizeIsACopyAndUniformStaysUniform) {
  RgbImage image;
  image.width = 37;
  image.height = 11;
  image.pixels.assign(37 * 11 * 3, 200);
  const RgbImage same = resize_bicubic(image, 37, 11);
  EXPECT_EQ(same.pixels, image.pixels);
  for (const auto& [w, h] : {std::pair{5, 3}, std::pair{100, 50}, std::pair{37, 40}, std::pair{1, 1}}) {
    const RgbImage out = resize_bicubic(image, w, h);
    ASSERT_EQ(out.pixels.size(), static_cast<size_t>(w * h * 3));
    for (const uint8_t v : out.pixels) ASSERT_EQ(v, 200);
  }
}

// Pillow 13 resamples vertically first when the height shrinks by more than twice as many pixels as the width;
// older Pillow always went horizontally first. The fixtures pin the Pillow 13 order (MatchesTransformers...);
// this shows the other order is a different, nearby result, so the choice is not vacuous.
TEST(BicubicResamplerTest, PassOrderMattersOnlyWhereThePillow13RuleApplies) {
  auto image = decode_image(read_bytes(fixture_dir() / "images/palette_200x150.png"));
  ASSERT_TRUE(image.ok()) << image.status();
  // Height shrinks by 10 > 2 * 4: vertical first in Pillow 13.
  const RgbImage v = resize_bicubic(*image, 196, 140, PassOrder::kPillow13);
  const RgbImage h = resize_bicubic(*image, 196, 140, PassOrder::kHorizontalFirst);
  int max_diff = 0;
  for (size_t i = 0; i < v.pixels.size(); ++i) max_diff = std::max(max_diff, std::abs(v.pixels[i] - h.pixels[i]));
  EXPECT_GE(max_diff, 1);
  EXPECT_LE(max_diff, 3);
  // Height shrinks by 10, width by 8: horizontal first in both.
  EXPECT_EQ(resize_bicubic(*image, 192, 140, PassOrder::kPillow13).pixels,
            resize_bicubic(*image, 192, 140, PassOrder::kHorizontalFirst).pixels);
}

}  // namespace
}  // namespace bm::engine::vision
