// libFuzzer target for untrusted video (engine/vision/video_decoder): arbitrary bytes -> decode_video (FFmpeg
// demuxing, decoding, swscale). Checks, besides "no crash": what decodes has the frames, positions and sizes
// the selection promised, within the limits.
//
// Limits are tight so that a header claiming a large (legal) video costs the fuzzer little.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "engine/vision/video_decoder.h"

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "video_decode_fuzz: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace v = bm::engine::vision;
  v::VideoLimits limits;
  limits.max_frame_pixels = 1 << 16;
  limits.max_side = 1024;
  limits.max_frames = 256;
  auto video = v::decode_video(std::string_view(reinterpret_cast<const char*>(data), size), v::VideoSampling{}, limits);
  if (!video.ok()) {
    require(!video.status().message().empty(), "an error without a message");
    return 0;
  }
  require(!video->frames.empty(), "no frames");
  require(video->frames.size() == video->frame_positions.size(), "frames and positions differ in number");
  require(video->total_frames <= limits.max_frames, "more frames than the limit");
  for (const auto& frame : video->frames) {
    require(frame.width == video->frames[0].width && frame.height == video->frames[0].height, "frames differ");
    require(int64_t{frame.width} * frame.height <= limits.max_frame_pixels, "a frame over the pixel limit");
    require(frame.pixels.size() == static_cast<size_t>(frame.width) * frame.height * 3, "a wrong pixel count");
  }
  return 0;
}
