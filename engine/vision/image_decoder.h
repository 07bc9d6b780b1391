#pragma once
// Decodes PNG, JPEG, WebP and GIF (first frame) bytes into 8-bit RGB the way the Qwen2-VL image processor of
// transformers sees a PIL image: images with an alpha channel or a transparency key are alpha-composited onto
// white with PIL's `alpha_composite` arithmetic, others go through PIL's `convert("RGB")` (grayscale replicated,
// palettes looked up, 16-bit samples cut to their high byte, 16-bit grayscale clipped to 255 as PIL does).
// The format is sniffed from the leading bytes, never taken from a name. Bad input is an InvalidArgument status
// with one sentence; the size is checked against DecodeLimits before any pixel buffer is allocated.
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/vision/rgb_image.h"

namespace bm::engine::vision {

enum class ImageFormat { kUnknown, kPng, kJpeg, kWebp, kGif };

struct DecodeLimits {
  // PIL's Image.MAX_IMAGE_PIXELS (it warns above, refuses above twice that): what PIL accepts quietly, we accept.
  int64_t max_pixels = 89'478'485;
  // Per side (WebP cannot exceed 16383, JPEG 65500).
  int32_t max_side = 65'535;
};

ImageFormat sniff_image_format(std::string_view bytes);
const char* image_format_name(ImageFormat format);

absl::StatusOr<RgbImage> decode_image(std::string_view bytes, const DecodeLimits& limits = {});

}  // namespace bm::engine::vision
