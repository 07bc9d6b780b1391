#pragma once
// GIF bytes -> DecodedImage (internal to engine/vision; image_decoder.h is the interface).
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/vision/decoded_image.h"

namespace bm::engine::vision {

absl::StatusOr<DecodedImage> read_gif(std::string_view bytes, const DecodeLimits& limits);

}  // namespace bm::engine::vision
