#pragma once
// Qwen2-VL / Qwen2.5-VL pixel preprocessing, as transformers' PIL-based Qwen2VLImageProcessor computes it:
// smart_resize -> PIL bicubic resize of the uint8 image -> x * rescale_factor in double, cast to float32 ->
// (x - mean) / std in float32 -> patches. The only inexactness is the resize (bicubic_resampler.h); the rest
// is the same arithmetic in the same order. See docs/vision.md.
//
// Patch layout: one row per 14x14 patch, rows ordered (t, h / merge, w / merge, merge_h, merge_w) so that the
// merge_size^2 patches the vision tower merges into one token are adjacent; each row holds
// channel x temporal_patch_size x patch_size x patch_size values. A single image is repeated to
// temporal_patch_size frames; video frames are padded with their last frame to a multiple of it.
#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/vision/processor_config.h"
#include "engine/vision/rgb_image.h"
#include "engine/vision/smart_resize.h"

namespace bm::engine::vision {

// Per-request bounds on the resized area (vLLM's mm_processor_kwargs min_pixels / max_pixels).
struct PixelRange {
  int64_t min_pixels = 0;
  int64_t max_pixels = 0;
};

struct PatchedMedia {
  std::vector<float> pixel_values;  // num_patches x patch_dim, row-major
  int64_t num_patches = 0;
  int64_t patch_dim = 0;
  std::array<int64_t, 3> grid_thw = {0, 0, 0};  // temporal groups, patch rows, patch columns
  int64_t num_tokens = 0;                       // <|image_pad|> or <|video_pad|> tokens: t * h * w / merge^2
};

// The size the processor resizes an image of height x width to, under `range` or the config's own bounds.
absl::StatusOr<ImageSize> processed_size(int64_t height, int64_t width, const ProcessorConfig& config,
                                         std::optional<PixelRange> range = std::nullopt);

// How many <|image_pad|> tokens the image stands for, without touching pixels.
absl::StatusOr<int64_t> num_image_tokens(int64_t height, int64_t width, const ProcessorConfig& config,
                                         std::optional<PixelRange> range = std::nullopt);

absl::StatusOr<PatchedMedia> preprocess_image(const RgbImage& image, const ProcessorConfig& config,
                                              std::optional<PixelRange> range = std::nullopt);

// Frames already resized to one size whose sides are multiples of patch_size * merge_size: rescaled, normalized
// and cut into patches; grid t = ceil(frames / temporal_patch_size).
absl::StatusOr<PatchedMedia> patchify_frames(const std::vector<RgbImage>& frames, const ProcessorConfig& config);

}  // namespace bm::engine::vision
