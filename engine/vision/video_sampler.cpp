#include "engine/vision/video_sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/vision/bicubic_resampler.h"

namespace bm::engine::vision {
namespace {

constexpr double kDefaultFps = 2.0;
constexpr int64_t kMaxFrames = 768;
constexpr int64_t kFrameMinTokens = 128;
constexpr int64_t kFrameMaxTokens = 768;
constexpr double kModelSeqLen = 128000;

// Python's round(), math.ceil and math.floor of number / factor, times factor.
int64_t round_by_factor(double number, int64_t factor) {
  return static_cast<int64_t>(std::nearbyint(number / static_cast<double>(factor))) * factor;
}
int64_t ceil_by_factor(double number, int64_t factor) {
  return static_cast<int64_t>(std::ceil(number / static_cast<double>(factor))) * factor;
}
int64_t floor_by_factor(double number, int64_t factor) {
  return static_cast<int64_t>(std::floor(number / static_cast<double>(factor))) * factor;
}

}  // namespace

absl::StatusOr<int64_t> smart_nframes(const VideoSampling& sampling, int64_t total_frames, double video_fps,
                                      int64_t frame_factor) {
  if (sampling.fps.has_value() && sampling.nframes.has_value()) {
    return absl::InvalidArgumentError("A video takes either fps or nframes, not both.");
  }
  if (total_frames <= 0 || !(video_fps > 0) || !std::isfinite(video_fps)) {
    return absl::InvalidArgumentError("The video has no frames or no valid frame rate.");
  }
  int64_t nframes = 0;
  if (sampling.nframes.has_value()) {
    nframes = round_by_factor(static_cast<double>(*sampling.nframes), frame_factor);
  } else {
    const double fps = sampling.fps.value_or(kDefaultFps);
    if (!(fps > 0) || !std::isfinite(fps)) return absl::InvalidArgumentError("The video fps must be positive.");
    const int64_t min_frames = ceil_by_factor(static_cast<double>(sampling.min_frames), frame_factor);
    const int64_t max_frames = floor_by_factor(
        static_cast<double>(sampling.max_frames.value_or(std::min(kMaxFrames, total_frames))), frame_factor);
    double n = static_cast<double>(total_frames) / video_fps * fps;
    // min(min(max(n, min_frames), max_frames), total_frames) with Python's mixed int/float comparisons.
    n = std::min(std::min(std::max(n, static_cast<double>(min_frames)), static_cast<double>(max_frames)),
                 static_cast<double>(total_frames));
    nframes = floor_by_factor(n, frame_factor);
  }
  if (nframes < frame_factor || nframes > total_frames) {
    return absl::InvalidArgumentError(absl::StrCat("The video would keep ", nframes, " frames; it must be within [",
                                                   frame_factor, ", ", total_frames, "]."));
  }
  return nframes;
}

std::vector<int64_t> frame_indices(int64_t first, int64_t last, int64_t n) {
  std::vector<int64_t> out;
  if (n <= 0) return out;
  if (n == 1) return {first};
  // ATen's CPU linspace kernel: the first half counts up from start, the second down from end.
  const auto start = static_cast<float>(first);
  const auto end = static_cast<float>(last);
  const float step = (end - start) / static_cast<float>(n - 1);
  const int64_t halfway = n / 2;
  out.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    const float v = i < halfway ? start + step * static_cast<float>(i) : end - step * static_cast<float>(n - i - 1);
    out.push_back(static_cast<int64_t>(std::nearbyint(v)));
  }
  return out;
}

absl::StatusOr<ImageSize> video_frame_size(const VideoSampling& sampling, int64_t nframes, int64_t height,
                                           int64_t width, const ProcessorConfig& config) {
  const int64_t factor = config.factor();
  const int64_t frame_factor = config.temporal_patch_size;
  const int64_t min_pixels = sampling.min_pixels.value_or(kFrameMinTokens * factor * factor);
  const double total_pixels =
      sampling.total_pixels.value_or(kModelSeqLen * static_cast<double>(factor) * static_cast<double>(factor) * 0.9);
  if (nframes <= 0 || min_pixels <= 0 || !(total_pixels > 0)) {
    return absl::InvalidArgumentError("The video's frame count and pixel budgets must be positive.");
  }
  // max(min(VIDEO_FRAME_MAX_PIXELS, total_pixels / nframes * FRAME_FACTOR), int(min_pixels * 1.05))
  double max_pixels =
      std::max(std::min(static_cast<double>(kFrameMaxTokens * factor * factor),
                        total_pixels / static_cast<double>(nframes) * static_cast<double>(frame_factor)),
               std::trunc(static_cast<double>(min_pixels) * 1.05));
  if (sampling.max_pixels.has_value()) max_pixels = std::min(static_cast<double>(*sampling.max_pixels), max_pixels);
  return smart_resize(height, width, factor, static_cast<double>(min_pixels), max_pixels,
                      SmartResizeRule::kQwenVlUtils);
}

absl::StatusOr<PatchedMedia> preprocess_video(const std::vector<RgbImage>& frames, double video_fps,
                                              const VideoSampling& sampling, const ProcessorConfig& config) {
  const auto total = static_cast<int64_t>(frames.size());
  auto nframes = smart_nframes(sampling, total, video_fps, config.temporal_patch_size);
  if (!nframes.ok()) return nframes.status();
  const std::vector<int64_t> indices = frame_indices(0, total - 1, *nframes);
  std::vector<RgbImage> selected;
  selected.reserve(indices.size());
  for (const int64_t i : indices) selected.push_back(frames[static_cast<size_t>(std::clamp<int64_t>(i, 0, total - 1))]);
  return preprocess_selected_frames(selected, sampling, config);
}

absl::StatusOr<PatchedMedia> preprocess_selected_frames(const std::vector<RgbImage>& frames,
                                                        const VideoSampling& sampling, const ProcessorConfig& config) {
  if (frames.empty()) return absl::InvalidArgumentError("The video has no frames to process.");
  for (const RgbImage& frame : frames) {
    if (frame.width != frames[0].width || frame.height != frames[0].height) {
      return absl::InvalidArgumentError("The video's frames do not all have the same size.");
    }
  }
  auto size =
      video_frame_size(sampling, static_cast<int64_t>(frames.size()), frames[0].height, frames[0].width, config);
  if (!size.ok()) return size.status();
  std::vector<RgbImage> resized;
  resized.reserve(frames.size());
  for (const RgbImage& frame : frames) {
    resized.push_back(resize_bicubic(frame, static_cast<int32_t>(size->width), static_cast<int32_t>(size->height)));
  }
  return patchify_frames(resized, config);
}

}  // namespace bm::engine::vision
