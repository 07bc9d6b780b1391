// Frame selection and frame sizes against qwen-vl-utils 0.0.14 (vision_process.py: smart_nframes, the
// torch.linspace(...).round() indices, fetch_video's per-frame pixel budget); the expected numbers were
// evaluated with its functions.
#include "engine/vision/video_sampler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace bm::engine::vision {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(VideoSamplerTest, NframesFollowsQwenVlUtils) {
  EXPECT_EQ(*smart_nframes({}, 100, 25), 8);  // 100 / 25 * 2 fps
  VideoSampling two_fps;
  two_fps.fps = 2;
  EXPECT_EQ(*smart_nframes(two_fps, 10, 30), 4);  // raised to min_frames
  EXPECT_EQ(*smart_nframes({}, 3, 30), 2);        // capped by the frames there are, floored to 2
  EXPECT_EQ(*smart_nframes({}, 2000, 30), 132);   // 133.3 floored to the temporal patch size
  VideoSampling exact;
  exact.nframes = 7;
  EXPECT_EQ(*smart_nframes(exact, 100, 30), 8);  // round(3.5) = 4, ties to even
  exact.nframes = 5;
  EXPECT_EQ(*smart_nframes(exact, 100, 30), 4);  // round(2.5) = 2
  VideoSampling slow;
  slow.fps = 0.5;
  slow.min_frames = 6;
  EXPECT_EQ(*smart_nframes(slow, 50, 10), 6);
}

TEST(VideoSamplerTest, RefusesImpossibleFrameCounts) {
  EXPECT_THAT(smart_nframes({}, 1, 30).status().message(), HasSubstr("within [2, 1]"));
  VideoSampling both;
  both.fps = 1;
  both.nframes = 4;
  EXPECT_THAT(smart_nframes(both, 100, 30).status().message(), HasSubstr("either fps or nframes"));
  EXPECT_FALSE(smart_nframes({}, 100, 0).ok());
  VideoSampling too_many;
  too_many.nframes = 200;
  EXPECT_FALSE(smart_nframes(too_many, 100, 30).ok());
}

TEST(VideoSamplerTest, IndicesAreTorchLinspaceRounded) {
  EXPECT_THAT(frame_indices(0, 99, 8), ElementsAre(0, 14, 28, 42, 57, 71, 85, 99));
  EXPECT_THAT(frame_indices(0, 132, 5), ElementsAre(0, 33, 66, 99, 132));
  EXPECT_THAT(frame_indices(0, 5, 3), ElementsAre(0, 2, 5));  // 2.5 rounds to even
  EXPECT_THAT(frame_indices(0, 7, 3), ElementsAre(0, 4, 7));  // 3.5 rounds to even
}

TEST(VideoSamplerTest, FrameSizeUsesThePerFrameBudget) {
  const ProcessorConfig config;
  EXPECT_EQ(*video_frame_size({}, 8, 480, 640, config), (ImageSize{476, 644}));
  EXPECT_EQ(*video_frame_size({}, 8, 1080, 1920, config), (ImageSize{560, 1008}));
  // 768 frames share 128000 * 28 * 28 * 0.9 pixels: 235200 each.
  EXPECT_EQ(*video_frame_size({}, 768, 1080, 1920, config), (ImageSize{336, 644}));
  // A request's max_pixels lowers the budget (min(max_pixels_supposed, max_pixels)).
  VideoSampling capped;
  capped.max_pixels = 200000;
  EXPECT_EQ(*video_frame_size(capped, 8, 480, 640, config), (ImageSize{364, 504}));
  // Below the frame minimum (128 tokens' worth) qwen-vl-utils asserts; here it is an error.
  capped.max_pixels = 50000;
  EXPECT_THAT(video_frame_size(capped, 8, 480, 640, config).status().message(), HasSubstr("at least min_pixels"));
}

TEST(VideoSamplerTest, PreprocessesSelectedFramesIntoTemporalPatches) {
  // 30 frames at 10 fps -> 2 fps keeps 6 frames -> grid t = 3.
  std::vector<RgbImage> frames(30);
  for (size_t i = 0; i < frames.size(); ++i) {
    frames[i].width = 64;
    frames[i].height = 48;
    frames[i].pixels.assign(64 * 48 * 3, static_cast<uint8_t>(i * 8));
  }
  ProcessorConfig config;
  config.image_mean = {0, 0, 0};
  config.image_std = {1, 1, 1};
  auto media = preprocess_video(frames, 10, {}, config);
  ASSERT_TRUE(media.ok()) << media.status();
  // 48x64 is under the 128-token frame minimum: smart_resize scales it up to 280x392.
  EXPECT_EQ(media->grid_thw, (std::array<int64_t, 3>{3, 20, 28}));
  EXPECT_EQ(media->num_tokens, 3 * 20 * 28 / 4);
  // Patch rows of temporal group 1 hold frames 2 and 3 of the selection: indices round(linspace(0, 29, 6)).
  const std::vector<int64_t> picked = frame_indices(0, 29, 6);
  EXPECT_THAT(picked, ElementsAre(0, 6, 12, 17, 23, 29));
  const int64_t row = 20 * 28;  // first row of t = 1
  const float frame2 = static_cast<float>(static_cast<double>(picked[2] * 8) / 255.0);
  const float frame3 = static_cast<float>(static_cast<double>(picked[3] * 8) / 255.0);
  EXPECT_EQ(media->pixel_values[row * media->patch_dim + 0], frame2);
  EXPECT_EQ(media->pixel_values[row * media->patch_dim + 14 * 14], frame3);
}

}  // namespace
}  // namespace bm::engine::vision
