// decode_video on videos written here: uncompressed AVI (BI_RGB, bottom-up BGR rows), so the expected RGB of each
// frame is known exactly and FFmpeg's demuxer, raw decoder and swscale's BGR -> RGB path are checked bit for bit.
#include "engine/vision/video_decoder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>

#include <iostream>

#include "engine/vision/image_decoder.h"
#include "engine/vision/image_processor.h"
#include "tests/unit/engine/vision/vision_fixtures.h"

namespace bm::engine::vision {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int kMjpegMaxLevels = 64;

uint8_t channel(int frame, int x, int y, int c) {
  switch (c) {
    case 0:
      return static_cast<uint8_t>(x * 7 + frame * 3);
    case 1:
      return static_cast<uint8_t>(y * 9 + frame * 5);
    default:
      return static_cast<uint8_t>((x + y + frame) * 4);
  }
}

void put32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put16(std::string& s, uint16_t v) {
  s.push_back(static_cast<char>(v & 0xff));
  s.push_back(static_cast<char>(v >> 8));
}
std::string chunk(const char* id, const std::string& body) {
  std::string s(id, 4);
  put32(s, static_cast<uint32_t>(body.size()));
  s += body;
  if (body.size() % 2 != 0) s.push_back('\0');
  return s;
}
std::string list(const char* type, const std::string& body) {
  return chunk("LIST", std::string(type, 4) + body);
}

// An AVI with one video stream: `handler` and `compression` are the fourccs ("DIB " and 0 for raw BGR,
// "MJPG" for JPEG frames), `frames` the chunk payloads.
std::string make_avi(int width, int height, int fps, const char* handler, uint32_t compression, uint16_t bits,
                     const std::vector<std::string>& frames) {
  const auto num_frames = static_cast<uint32_t>(frames.size());
  const uint32_t frame_bytes = static_cast<uint32_t>(width * height * 3);
  std::string avih;
  for (const uint32_t v : {1000000u / fps, frame_bytes * fps, 0u, 0u, num_frames, 0u, 1u, frame_bytes,
                           static_cast<uint32_t>(width), static_cast<uint32_t>(height), 0u, 0u, 0u, 0u}) {
    put32(avih, v);
  }
  std::string strh = std::string("vids") + handler;
  put32(strh, 0);  // flags
  put16(strh, 0);  // priority
  put16(strh, 0);  // language
  for (const uint32_t v : {0u, 1u, static_cast<uint32_t>(fps), 0u, num_frames, frame_bytes, 0xffffffffu, 0u}) {
    put32(strh, v);
  }
  for (const uint16_t v : {uint16_t{0}, uint16_t{0}, static_cast<uint16_t>(width), static_cast<uint16_t>(height)}) {
    put16(strh, v);
  }
  std::string strf;
  put32(strf, 40);
  put32(strf, static_cast<uint32_t>(width));
  put32(strf, static_cast<uint32_t>(height));  // positive: bottom-up rows for raw BGR
  put16(strf, 1);
  put16(strf, bits);
  for (const uint32_t v : {compression, frame_bytes, 0u, 0u, 0u, 0u}) put32(strf, v);
  std::string movi;
  for (const std::string& frame : frames) movi += chunk("00dc", frame);
  const std::string hdrl = list("hdrl", chunk("avih", avih) + list("strl", chunk("strh", strh) + chunk("strf", strf)));
  return chunk("RIFF", "AVI " + hdrl + list("movi", movi));
}

// Raw BGR frames whose pixels are channel(frame, x, y, c); width * 3 must be a multiple of 4 (no row padding).
std::string make_avi(int width, int height, int num_frames, int fps) {
  std::vector<std::string> frames;
  for (int f = 0; f < num_frames; ++f) {
    std::string pixels;
    for (int y = height - 1; y >= 0; --y) {
      for (int x = 0; x < width; ++x) {
        for (const int c : {2, 1, 0}) pixels.push_back(static_cast<char>(channel(f, x, y, c)));
      }
    }
    frames.push_back(std::move(pixels));
  }
  return make_avi(width, height, fps, "DIB ", 0, 24, frames);
}

TEST(VideoDecoderTest, KeepsTheFramesQwenVlUtilsWouldKeepExactly) {
  const std::string avi = make_avi(32, 24, 30, 10);
  auto video = decode_video(avi, VideoSampling{});
  ASSERT_TRUE(video.ok()) << video.status();
  EXPECT_EQ(video->total_frames, 30);
  EXPECT_DOUBLE_EQ(video->fps, 10.0);
  // 30 frames at 10 fps sampled at 2 fps: 6 frames at round(linspace(0, 29, 6)).
  EXPECT_THAT(video->frame_positions, ElementsAre(0, 6, 12, 17, 23, 29));
  ASSERT_EQ(video->frames.size(), 6u);
  for (size_t i = 0; i < video->frames.size(); ++i) {
    const RgbImage& frame = video->frames[i];
    ASSERT_EQ(frame.width, 32);
    ASSERT_EQ(frame.height, 24);
    const int f = static_cast<int>(video->frame_positions[i]);
    for (int y = 0; y < 24; ++y) {
      for (int x = 0; x < 32; ++x) {
        for (int c = 0; c < 3; ++c) {
          ASSERT_EQ(frame.pixels[(y * 32 + x) * 3 + c], channel(f, x, y, c)) << f << " " << x << "," << y << "," << c;
        }
      }
    }
  }
  VideoSampling exact;
  exact.nframes = 4;
  auto four = decode_video(avi, exact);
  ASSERT_TRUE(four.ok()) << four.status();
  EXPECT_THAT(four->frame_positions, ElementsAre(0, 10, 19, 29));
}

// A YUV path: Motion-JPEG frames (FFmpeg's own JPEG decoder, full-range yuvj420p, swscale to RGB) against the
// same JPEG through libjpeg (decode_image). The decoders differ in IDCT and chroma upsampling, which on this
// noisy 4:2:0 image with sharp colour edges gives measured max 57 levels, mean |diff| 4.5, per-channel bias
// under 0.25; the bounds catch a wrong matrix, range, orientation or channel order, not decoder detail.
TEST(VideoDecoderTest, MotionJpegFramesAgreeWithTheImageDecoder) {
  const std::string jpeg = testing::read_bytes(testing::fixture_dir() / "images/photo_500x333.jpg");
  auto still = decode_image(jpeg);
  ASSERT_TRUE(still.ok()) << still.status();
  const std::string avi = make_avi(500, 333, 2, "MJPG", 0x47504a4d /* MJPG */, 24, std::vector<std::string>(4, jpeg));
  auto video = decode_video(avi, VideoSampling{});
  ASSERT_TRUE(video.ok()) << video.status();
  EXPECT_EQ(video->total_frames, 4);
  EXPECT_DOUBLE_EQ(video->fps, 2.0);
  EXPECT_THAT(video->frame_positions, ElementsAre(0, 1, 2, 3));  // min_frames 4
  ASSERT_EQ(video->frames[0].width, 500);
  ASSERT_EQ(video->frames[0].height, 333);
  int max_diff = 0;
  double sum_diff = 0;
  for (size_t i = 0; i < still->pixels.size(); ++i) {
    const int d = std::abs(video->frames[2].pixels[i] - still->pixels[i]);
    max_diff = std::max(max_diff, d);
    sum_diff += d;
  }
  // No systematic shift per channel: the YUV matrix and range are right.
  std::array<double, 3> bias = {0, 0, 0};
  const size_t num_pixels = still->pixels.size() / 3;
  for (size_t i = 0; i < num_pixels; ++i) {
    for (size_t c = 0; c < 3; ++c) bias[c] += video->frames[2].pixels[i * 3 + c] - still->pixels[i * 3 + c];
  }
  for (double& b : bias) {
    b /= static_cast<double>(num_pixels);
    EXPECT_LE(std::abs(b), 0.5);
  }
  const double mean_diff = sum_diff / static_cast<double>(still->pixels.size());
  std::cout << "[ vision ] MJPEG frame vs libjpeg: max |diff| " << max_diff << ", mean " << mean_diff << ", bias "
            << bias[0] << " " << bias[1] << " " << bias[2] << "\n";
  EXPECT_LE(max_diff, kMjpegMaxLevels);
  EXPECT_LE(mean_diff, 6.0);
  EXPECT_EQ(video->frames[0].pixels, video->frames[3].pixels);
}

TEST(VideoDecoderTest, SelectedFramesBecomeVideoPatches) {
  auto video = decode_video(make_avi(32, 24, 30, 10), VideoSampling{});
  ASSERT_TRUE(video.ok()) << video.status();
  auto media = preprocess_selected_frames(video->frames, VideoSampling{}, ProcessorConfig{});
  ASSERT_TRUE(media.ok()) << media.status();
  // 24x32 is under the 128-token frame minimum: scaled up to 280x392; 6 frames -> t = 3.
  EXPECT_EQ(media->grid_thw, (std::array<int64_t, 3>{3, 20, 28}));
  EXPECT_EQ(media->num_tokens, 3 * 20 * 28 / 4);
}

TEST(VideoDecoderTest, RefusesWhatIsNotAVideoOrTooLarge) {
  EXPECT_THAT(decode_video("", VideoSampling{}).status().message(), HasSubstr("empty"));
  EXPECT_THAT(decode_video(std::string(1000, 'x'), VideoSampling{}).status().message(), HasSubstr("cannot be read"));
  const std::string avi = make_avi(32, 24, 30, 10);
  VideoLimits small;
  small.max_frame_pixels = 500;
  EXPECT_THAT(decode_video(avi, VideoSampling{}, small).status().message(), HasSubstr("over the limit of 500"));
  VideoLimits few;
  few.max_frames = 10;
  EXPECT_THAT(decode_video(avi, VideoSampling{}, few).status().message(), HasSubstr("more than 10 frames"));
  // One frame cannot give the two a temporal patch needs.
  EXPECT_THAT(decode_video(make_avi(32, 24, 1, 10), VideoSampling{}).status().message(), HasSubstr("within [2, 1]"));
}

TEST(VideoDecoderTest, SurvivesTruncationAndCorruption) {
  const std::string avi = make_avi(32, 24, 12, 10);
  for (size_t len = 0; len < avi.size(); len += 97) {
    auto video = decode_video(std::string_view(avi).substr(0, len), VideoSampling{});
    if (video.ok()) {
      for (const RgbImage& frame : video->frames) ASSERT_EQ(frame.pixels.size(), 32u * 24 * 3);
    } else {
      EXPECT_FALSE(video.status().message().empty());
    }
  }
  std::string garbled = avi;
  for (size_t i = 12; i < 400; i += 5) garbled[i] = static_cast<char>(garbled[i] ^ 0x77);
  auto video = decode_video(garbled, VideoSampling{});
  if (!video.ok()) {
    EXPECT_FALSE(video.status().message().empty());
  }
}

}  // namespace
}  // namespace bm::engine::vision
