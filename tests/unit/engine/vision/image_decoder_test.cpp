#include "engine/vision/image_decoder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "tests/unit/engine/vision/vision_fixtures.h"

namespace bm::engine::vision {
namespace {

using testing::expected;
using testing::fixture_dir;
using ::testing::HasSubstr;
using testing::read_bytes;

// Same fingerprint as the generator: sum of (i % 65521 + 1) * byte, wrapping at 2^64 like numpy's uint64 sum.
uint64_t checksum(const RgbImage& image) {
  uint64_t sum = 0;
  for (size_t i = 0; i < image.pixels.size(); ++i) sum += (i % 65521 + 1) * uint64_t{image.pixels[i]};
  return sum;
}

TEST(ImageDecoderTest, SniffsTheFormatFromLeadingBytes) {
  EXPECT_EQ(sniff_image_format(read_bytes(fixture_dir() / "images/tiny_10x10.png")), ImageFormat::kPng);
  EXPECT_EQ(sniff_image_format(read_bytes(fixture_dir() / "images/photo_500x333.jpg")), ImageFormat::kJpeg);
  EXPECT_EQ(sniff_image_format(read_bytes(fixture_dir() / "images/lossy_320x240.webp")), ImageFormat::kWebp);
  EXPECT_EQ(sniff_image_format(read_bytes(fixture_dir() / "images/plain_45x45.gif")), ImageFormat::kGif);
  EXPECT_EQ(sniff_image_format(read_bytes(fixture_dir() / "bad/not_an_image.bmp")), ImageFormat::kUnknown);
  EXPECT_EQ(sniff_image_format("RIFF\x10\0\0\0WAVE"), ImageFormat::kUnknown);
  EXPECT_EQ(sniff_image_format(""), ImageFormat::kUnknown);
}

// The RGB PIL hands the processor (after transformers' convert_to_rgb: alpha composited onto white) is the RGB we
// decode, byte for byte, for every format and mode of the fixtures.
TEST(ImageDecoderTest, DecodesExactlyAsPilThroughConvertToRgb) {
  std::set<std::string> seen;
  for (const auto& c : expected()["cases"]) {
    const std::string name = c["image"];
    if (!seen.insert(name).second) continue;
    SCOPED_TRACE(name);
    auto image = decode_image(read_bytes(fixture_dir() / "images" / name));
    ASSERT_TRUE(image.ok()) << image.status();
    EXPECT_EQ(image->width, c["decoded"]["width"].get<int>());
    EXPECT_EQ(image->height, c["decoded"]["height"].get<int>());
    EXPECT_EQ(std::to_string(checksum(*image)), c["decoded"]["checksum"].get<std::string>());
  }
  EXPECT_GE(seen.size(), 10u);
}

TEST(ImageDecoderTest, RefusesEveryBadFileWithOneSentence) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(fixture_dir() / "bad")) {
    SCOPED_TRACE(entry.path().filename().string());
    auto image = decode_image(read_bytes(entry.path()));
    ASSERT_FALSE(image.ok());
    EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string message(image.status().message());
    EXPECT_FALSE(message.empty());
    EXPECT_EQ(message.back(), '.');
    ++count;
  }
  EXPECT_GE(count, 10);
}

TEST(ImageDecoderTest, RefusesHugeDimensionsBeforeDecoding) {
  auto side = decode_image(read_bytes(fixture_dir() / "bad/bomb_side_100000x100000.png"));
  EXPECT_THAT(side.status().message(), HasSubstr("pixels per side"));
  for (const char* name : {"bomb_pixels_30000x30000.png", "bomb_30000x30000.jpg"}) {
    auto image = decode_image(read_bytes(fixture_dir() / "bad" / name));
    EXPECT_THAT(image.status().message(), HasSubstr("30000x30000 (900000000 pixels), over the limit")) << name;
  }
  auto gif = decode_image(read_bytes(fixture_dir() / "bad/bomb_60000x60000.gif"));
  EXPECT_THAT(gif.status().message(), HasSubstr("over the limit"));
  // A caller's tighter limit applies to ordinary images too.
  DecodeLimits tight;
  tight.max_pixels = 1000;
  for (const char* name : {"rgb_512x384.png", "photo_500x333.jpg", "lossy_320x240.webp", "anim_120x80.gif"}) {
    auto image = decode_image(read_bytes(fixture_dir() / "images" / name), tight);
    EXPECT_THAT(image.status().message(), HasSubstr("over the limit of 1000 pixels")) << name;
  }
}

TEST(ImageDecoderTest, NamesWhatIsWrong) {
  EXPECT_THAT(decode_image("").status().message(), HasSubstr("empty"));
  EXPECT_THAT(decode_image(read_bytes(fixture_dir() / "bad/not_an_image.bmp")).status().message(),
              HasSubstr("not PNG, JPEG, WebP or GIF"));
  EXPECT_THAT(decode_image(read_bytes(fixture_dir() / "bad/truncated_gray_97x211.jpg")).status().message(),
              HasSubstr("JPEG image is corrupt"));
  EXPECT_THAT(decode_image(read_bytes(fixture_dir() / "bad/truncated_palette_200x150.png")).status().message(),
              HasSubstr("PNG image is corrupt"));
}

// The file's end is judged as PIL judges it: a PNG without its trailing chunks (IEND) decodes to the same pixels,
// a JPEG without its EOI marker is refused as truncated.
TEST(ImageDecoderTest, JudgesMissingEndMarkersAsPil) {
  const std::string png = read_bytes(fixture_dir() / "images/tiny_10x10.png");
  auto whole = decode_image(png);
  auto cut = decode_image(std::string_view(png).substr(0, png.size() - 12));
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_TRUE(cut.ok()) << cut.status();
  EXPECT_EQ(cut->pixels, whole->pixels);
  const std::string jpeg = read_bytes(fixture_dir() / "images/gray_97x211.jpg");
  EXPECT_TRUE(decode_image(jpeg).ok());
  EXPECT_THAT(decode_image(std::string_view(jpeg).substr(0, jpeg.size() - 2)).status().message(),
              HasSubstr("truncated"));
}

// Every prefix length class and random corruption of small files of each format: an error or an image, never a
// crash (the sanitizer build runs this too).
TEST(ImageDecoderTest, SurvivesTruncationAndCorruption) {
  std::mt19937 rng(1234);
  for (const char* name : {"tiny_10x10.png", "interlaced_130x60.png", "gray_97x211.jpg", "progressive_211x97.jpg",
                           "alpha_160x90.webp", "plain_45x45.gif", "anim_120x80.gif", "palette_trns_64x48.png"}) {
    SCOPED_TRACE(name);
    const std::string data = read_bytes(fixture_dir() / "images" / name);
    for (size_t len = 0; len < data.size(); len += 1 + len / 8) {
      auto image = decode_image(std::string_view(data).substr(0, len));
      if (!image.ok()) {
        EXPECT_FALSE(image.status().message().empty());
      }
    }
    for (int round = 0; round < 60; ++round) {
      std::string garbled = data;
      for (int k = 0; k < 4; ++k) garbled[8 + rng() % (garbled.size() - 8)] = static_cast<char>(rng());
      auto image = decode_image(garbled);
      if (image.ok()) {
        EXPECT_EQ(image->pixels.size(), static_cast<size_t>(image->width) * image->height * 3);
      }
    }
  }
}

}  // namespace
}  // namespace bm::engine::vision
