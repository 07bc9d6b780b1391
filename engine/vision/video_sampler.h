#pragma once
// Video preprocessing for Qwen2.5-VL from frames that are already decoded: which frames to keep and at what size,
// as qwen-vl-utils' fetch_video decides (smart_nframes, torch.linspace(...).round() indices, the per-frame pixel
// budget), then the same resize, normalization and patching as images (image_processor.h) with
// grid t = frames / temporal_patch_size.
//
// Frame pixels: qwen-vl-utils resizes video with torchvision's antialiased bicubic on tensors, the HF video
// processor with torch as well; here frames go through the PIL bicubic of the image path, so frame counts, sizes,
// grids and token counts match qwen-vl-utils exactly while pixel values are those of the image processor applied
// to each frame.
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/vision/image_processor.h"
#include "engine/vision/processor_config.h"
#include "engine/vision/rgb_image.h"

namespace bm::engine::vision {

// The request's video options (qwen-vl-utils' names); fps and nframes are mutually exclusive.
struct VideoSampling {
  std::optional<double> fps;           // frames per second to sample; 2.0 when neither fps nor nframes is set
  std::optional<int64_t> nframes;      // exact frame count (rounded to the temporal patch size)
  int64_t min_frames = 4;              // with fps
  std::optional<int64_t> max_frames;   // with fps; min(768, total frames) when unset
  std::optional<int64_t> min_pixels;   // per frame; 128 tokens' worth (128 * 28 * 28) when unset
  std::optional<int64_t> max_pixels;   // per frame; capped by the total budget below
  std::optional<double> total_pixels;  // all frames together; 128000 * 28 * 28 * 0.9 when unset
};

// qwen-vl-utils' smart_nframes: InvalidArgument when the result is outside [2, total_frames].
absl::StatusOr<int64_t> smart_nframes(const VideoSampling& sampling, int64_t total_frames, double video_fps,
                                      int64_t frame_factor = 2);

// torch.linspace(first, last, n) in float32, each rounded half to even: the frames qwen-vl-utils keeps.
std::vector<int64_t> frame_indices(int64_t first, int64_t last, int64_t n);

// The resized frame size of fetch_video for `nframes` frames of height x width.
absl::StatusOr<ImageSize> video_frame_size(const VideoSampling& sampling, int64_t nframes, int64_t height,
                                           int64_t width, const ProcessorConfig& config);

// Frames already selected for `sampling` (decode_video's): sized by the per-frame budget for their count,
// resized, normalized and patched.
absl::StatusOr<PatchedMedia> preprocess_selected_frames(const std::vector<RgbImage>& frames,
                                                        const VideoSampling& sampling, const ProcessorConfig& config);

// All decoded frames of a video at video_fps: selects, resizes, normalizes and patches.
absl::StatusOr<PatchedMedia> preprocess_video(const std::vector<RgbImage>& frames, double video_fps,
                                              const VideoSampling& sampling, const ProcessorConfig& config);

}  // namespace bm::engine::vision
