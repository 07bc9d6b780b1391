#pragma once
// The target size of the Qwen2-VL image processor (transformers' `smart_resize` in
// models/qwen2_vl/image_processing_qwen2_vl.py): both sides multiples of `factor` (patch_size * merge_size = 28),
// the area within [min_pixels, max_pixels], the aspect ratio kept as closely as the rounding allows. Python's
// rounding is reproduced: `round()` ties to even, divisions are IEEE doubles.
#include <cstdint>

#include "absl/status/statusor.h"

namespace bm::engine::vision {

struct ImageSize {
  int64_t height = 0;
  int64_t width = 0;
  bool operator==(const ImageSize&) const = default;
};

// Two copies of the function exist upstream and differ at the edges: qwen-vl-utils (which sizes video frames)
// clamps the rounded sides to at least `factor` first and not after shrinking, and refuses max_pixels below
// min_pixels; transformers clamps after shrinking and has no such check.
enum class SmartResizeRule { kTransformers, kQwenVlUtils };

// InvalidArgument when the aspect ratio is above 200 (as both raise) or the result would be empty. The pixel
// bounds are doubles because qwen-vl-utils computes its video budget in floating point.
absl::StatusOr<ImageSize> smart_resize(int64_t height, int64_t width, int64_t factor, double min_pixels,
                                       double max_pixels, SmartResizeRule rule = SmartResizeRule::kTransformers);

}  // namespace bm::engine::vision
