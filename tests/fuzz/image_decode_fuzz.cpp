// libFuzzer target for untrusted media (engine/vision): arbitrary bytes -> decode_image (PNG, JPEG, WebP, GIF),
// and when they decode, the Qwen2-VL preprocessing of the result. Checks, besides "no crash": a decoded image has
// the pixel count its size says and respects the limits; preprocessing gives the shapes its grid says.
//
// Limits are tighter than the defaults so a header that claims a large (legal) image costs the fuzzer little.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "engine/vision/image_decoder.h"
#include "engine/vision/image_processor.h"

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "image_decode_fuzz: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace v = bm::engine::vision;
  v::DecodeLimits limits;
  limits.max_pixels = 1 << 22;
  limits.max_side = 4096;
  auto image = v::decode_image(std::string_view(reinterpret_cast<const char*>(data), size), limits);
  if (!image.ok()) {
    require(!image.status().message().empty(), "an error without a message");
    return 0;
  }
  require(image->width > 0 && image->height > 0, "an empty image");
  require(int64_t{image->width} * image->height <= limits.max_pixels, "an image over the pixel limit");
  require(image->pixels.size() == static_cast<size_t>(image->width) * image->height * 3, "a wrong pixel count");
  v::ProcessorConfig config;
  auto media = v::preprocess_image(*image, config, v::PixelRange{3136, 28 * 28 * 64});
  if (!media.ok()) return 0;  // e.g. an aspect ratio over 200
  require(media->num_patches == media->grid_thw[0] * media->grid_thw[1] * media->grid_thw[2], "a wrong grid");
  require(media->pixel_values.size() == static_cast<size_t>(media->num_patches * media->patch_dim),
          "a wrong pixel_values size");
  return 0;
}
