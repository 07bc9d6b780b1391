// The image workload's synthetic images and PNG writer: what it writes, bm_vision's decoder (the one the server
// uses for data URLs) reads back pixel for pixel.
#include "daemon/bench/synthetic_image.h"

#include <algorithm>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/vision/data_url.h"
#include "engine/vision/image_decoder.h"

namespace bm::daemon::bench {
namespace {

using ::testing::HasSubstr;

void expect_round_trip(const SyntheticImage& image) {
  std::string png = encode_png(image);
  absl::StatusOr<engine::vision::RgbImage> decoded = engine::vision::decode_image(png);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->width, image.width);
  EXPECT_EQ(decoded->height, image.height);
  EXPECT_TRUE(decoded->pixels == image.rgb) << image.width << "x" << image.height << " came back different";
}

TEST(SyntheticImageTest, PngRoundTripsThroughTheServersDecoder) {
  // 448x448 is 602 560 bytes of scanlines: ten stored deflate blocks, the last one partial.
  expect_round_trip(make_synthetic_image(448, 448, 2025, 0));
  // Odd sizes, a non-square one, and a stream that ends exactly on a 65 535-byte block boundary:
  // height × (1 + 3 × width) = 771 × 85 = 65535.
  expect_round_trip(make_synthetic_image(29, 31, 1, 7));
  expect_round_trip(make_synthetic_image(640, 28, 3, 1));
  expect_round_trip(make_synthetic_image(28, 771, 9, 2));
}

TEST(SyntheticImageTest, ImagesAreDeterministicAndDistinct) {
  SyntheticImage a = make_synthetic_image(64, 48, 2025, 3);
  EXPECT_EQ(a.rgb, make_synthetic_image(64, 48, 2025, 3).rgb);
  EXPECT_EQ(encode_png(a), encode_png(make_synthetic_image(64, 48, 2025, 3)));
  EXPECT_NE(a.rgb, make_synthetic_image(64, 48, 2025, 4).rgb);  // another request's image
  EXPECT_NE(a.rgb, make_synthetic_image(64, 48, 2026, 3).rgb);  // another seed
  // Not flat: a gradient, so the pixels span most of the range.
  auto [lo, hi] = std::minmax_element(a.rgb.begin(), a.rgb.end());
  EXPECT_LT(*lo, 40);
  EXPECT_GT(*hi, 215);
}

TEST(SyntheticImageTest, DataUrlCarriesThePngAsTheServerParsesIt) {
  std::string png = encode_png(make_synthetic_image(28, 28, 5, 0));
  std::string url = png_data_url(png);
  EXPECT_EQ(url.rfind("data:image/png;base64,", 0), 0u);
  absl::StatusOr<engine::vision::DataUrl> parsed = engine::vision::parse_data_url(url, 1 << 20);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->bytes, png);
}

TEST(SyntheticImageTest, WorkloadSettingsAreCheckedWithOneSentence) {
  EXPECT_TRUE(check_image_workload(0, 0, 0).ok());  // text: the size does not matter
  EXPECT_TRUE(check_image_workload(2, 448, 448).ok());
  EXPECT_TRUE(check_image_workload(1, 28, 4096).ok());
  absl::Status negative = check_image_workload(-1, 448, 448);
  EXPECT_EQ(negative.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(negative.message()), HasSubstr("--images-per-prompt must not be negative"));
  EXPECT_THAT(std::string(check_image_workload(1, 27, 448).message()),
              HasSubstr("--image-size 27x448 is outside 28..4096 pixels per side"));
  EXPECT_FALSE(check_image_workload(1, 448, 4097).ok());
}

}  // namespace
}  // namespace bm::daemon::bench
