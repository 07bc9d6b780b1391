#pragma once
// What a format reader hands to the image decoder: 8-bit RGB or RGBA before the alpha is composited. Internal to
// engine/vision (the readers and image_decoder.cpp).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace bm::engine::vision {

struct DecodeLimits;

struct DecodedImage {
  int32_t width = 0;
  int32_t height = 0;
  int32_t channels = 3;  // 3 (RGB) or 4 (RGBA)
  std::vector<uint8_t> pixels;
};

// Rejects dimensions over the limits before any pixel buffer is allocated; `format` names the format in the
// message ("PNG image is 70000x70000 ...").
absl::Status check_dimensions(const char* format, int64_t width, int64_t height, const DecodeLimits& limits);

}  // namespace bm::engine::vision
