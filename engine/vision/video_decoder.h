#pragma once
// Video bytes (any container and codec Debian's FFmpeg reads: MP4/H.264, WebM/VP9, AVI, ...) -> the frames
// qwen-vl-utils would keep: the stream's frames are counted first (demuxing only), smart_nframes and the
// linspace indices pick the frames (video_sampler.h), and only those are converted to RGB and kept, so memory is
// bounded by the selection, not by the video's length.
//
// Frame positions are counted in decoder output order, as decord's frame indices and torchvision's decoded
// sequence are. RGB conversion is swscale's (bicubic chroma upsampling, accurate rounding, full chroma
// interpolation, the stream's YUV matrix); it is not bit-compared with decord or PyAV.
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/vision/rgb_image.h"
#include "engine/vision/video_sampler.h"

namespace bm::engine::vision {

struct VideoLimits {
  int64_t max_frame_pixels = int64_t{3840} * 2160;  // per frame (4K UHD)
  int32_t max_side = 8192;
  int64_t max_frames = 100'000;  // frames in the stream, counted before anything is decoded
};

struct DecodedVideo {
  std::vector<RgbImage> frames;          // the selected frames, in order
  std::vector<int64_t> frame_positions;  // where each was in the stream
  int64_t total_frames = 0;
  double fps = 0;  // the stream's average frame rate
};

// InvalidArgument with one sentence for what is not a readable video, has no video stream, is over a limit,
// or changes frame size midway. The first call caps FFmpeg's single allocations at 256 MiB for the process
// (av_max_alloc) and silences its log: FFmpeg is used for untrusted media only.
absl::StatusOr<DecodedVideo> decode_video(std::string_view bytes, const VideoSampling& sampling,
                                          const VideoLimits& limits = {}, int64_t frame_factor = 2);

}  // namespace bm::engine::vision
