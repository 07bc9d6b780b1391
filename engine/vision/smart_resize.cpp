#include "engine/vision/smart_resize.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace bm::engine::vision {
namespace {

// Python's round() of a float: to nearest, ties to even (the default FE_TONEAREST mode of nearbyint).
int64_t python_round(double x) {
  return static_cast<int64_t>(std::nearbyint(x));
}

}  // namespace

absl::StatusOr<ImageSize> smart_resize(int64_t height, int64_t width, int64_t factor, double min_pixels,
                                       double max_pixels, SmartResizeRule rule) {
  const bool hf = rule == SmartResizeRule::kTransformers;
  if (height <= 0 || width <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("The image size ", width, "x", height, " is empty."));
  }
  // Keeps height * width and the rounded area exact in int64 and double.
  constexpr int64_t kMaxSide = int64_t{1} << 24;
  if (height > kMaxSide || width > kMaxSide) {
    return absl::InvalidArgumentError(absl::StrCat("The image size ", width, "x", height, " is too large."));
  }
  if (factor <= 0 || !(min_pixels > 0) || !(max_pixels > 0)) {
    return absl::InvalidArgumentError("The resize factor, min_pixels and max_pixels must be positive.");
  }
  if (!hf && max_pixels < min_pixels) {
    return absl::InvalidArgumentError("max_pixels must be at least min_pixels.");
  }
  const double ratio = static_cast<double>(std::max(height, width)) / static_cast<double>(std::min(height, width));
  if (ratio > 200) {
    return absl::InvalidArgumentError(
        absl::StrCat("The image is ", width, "x", height, ": its aspect ratio must be smaller than 200."));
  }
  const auto h = static_cast<double>(height);
  const auto w = static_cast<double>(width);
  const auto f = static_cast<double>(factor);
  int64_t h_bar = python_round(h / f) * factor;
  int64_t w_bar = python_round(w / f) * factor;
  if (!hf) {
    h_bar = std::max(factor, h_bar);
    w_bar = std::max(factor, w_bar);
  }
  // Areas stay far below 2^53, so the int/float comparisons and divisions are exact as in Python.
  const auto area = static_cast<double>(h_bar * w_bar);
  if (area > max_pixels) {
    const double beta = std::sqrt(static_cast<double>(height * width) / max_pixels);
    h_bar = static_cast<int64_t>(std::floor(h / beta / f)) * factor;
    w_bar = static_cast<int64_t>(std::floor(w / beta / f)) * factor;
    if (hf) {
      h_bar = std::max(factor, h_bar);
      w_bar = std::max(factor, w_bar);
    }
  } else if (area < min_pixels) {
    const double beta = std::sqrt(min_pixels / static_cast<double>(height * width));
    h_bar = static_cast<int64_t>(std::ceil(h * beta / f)) * factor;
    w_bar = static_cast<int64_t>(std::ceil(w * beta / f)) * factor;
  }
  if (h_bar <= 0 || w_bar <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("The image is ", width, "x", height, ", too small for the processor's size limits."));
  }
  return ImageSize{h_bar, w_bar};
}

}  // namespace bm::engine::vision
