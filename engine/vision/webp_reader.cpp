#include "engine/vision/webp_reader.h"

#include <webp/decode.h>
#include <webp/demux.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/vision/image_decoder.h"

namespace bm::engine::vision {
namespace {

// Animated WebP: PIL shows the first frame as composed on the canvas by libwebp's animation decoder.
absl::StatusOr<DecodedImage> read_first_frame(std::string_view bytes, bool has_alpha, const DecodeLimits& limits) {
  WebPData data{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
  WebPAnimDecoderOptions options;
  if (!WebPAnimDecoderOptionsInit(&options)) return absl::InternalError("Could not start the WebP decoder.");
  options.color_mode = MODE_RGBA;
  options.use_threads = 0;
  WebPAnimDecoder* decoder = WebPAnimDecoderNew(&data, &options);
  if (decoder == nullptr) return absl::InvalidArgumentError("The animated WebP image is corrupt.");
  WebPAnimInfo info;
  absl::StatusOr<DecodedImage> result = absl::InvalidArgumentError("The animated WebP image is corrupt.");
  uint8_t* frame = nullptr;
  int timestamp = 0;
  if (WebPAnimDecoderGetInfo(decoder, &info)) {
    absl::Status size = check_dimensions("The WebP", info.canvas_width, info.canvas_height, limits);
    if (!size.ok()) {
      result = size;
    } else if (WebPAnimDecoderGetNext(decoder, &frame, &timestamp)) {
      DecodedImage image;
      image.width = static_cast<int32_t>(info.canvas_width);
      image.height = static_cast<int32_t>(info.canvas_height);
      const size_t num_pixels = static_cast<size_t>(image.width) * image.height;
      image.channels = has_alpha ? 4 : 3;
      image.pixels.resize(num_pixels * image.channels);
      for (size_t i = 0; i < num_pixels; ++i) {
        std::memcpy(image.pixels.data() + i * image.channels, frame + i * 4, image.channels);
      }
      result = std::move(image);
    }
  }
  WebPAnimDecoderDelete(decoder);
  return result;
}

}  // namespace

absl::StatusOr<DecodedImage> read_webp(std::string_view bytes, const DecodeLimits& limits) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  WebPBitstreamFeatures features;
  if (WebPGetFeatures(data, bytes.size(), &features) != VP8_STATUS_OK) {
    return absl::InvalidArgumentError("The WebP image is corrupt: its header cannot be read.");
  }
  absl::Status size = check_dimensions("The WebP", features.width, features.height, limits);
  if (!size.ok()) return size;
  if (features.has_animation) return read_first_frame(bytes, features.has_alpha != 0, limits);
  DecodedImage image;
  image.width = features.width;
  image.height = features.height;
  image.channels = features.has_alpha ? 4 : 3;
  const size_t stride = static_cast<size_t>(image.width) * image.channels;
  image.pixels.resize(stride * image.height);
  const uint8_t* ok =
      image.channels == 4
          ? WebPDecodeRGBAInto(data, bytes.size(), image.pixels.data(), image.pixels.size(), static_cast<int>(stride))
          : WebPDecodeRGBInto(data, bytes.size(), image.pixels.data(), image.pixels.size(), static_cast<int>(stride));
  if (ok == nullptr) return absl::InvalidArgumentError("The WebP image is corrupt or truncated.");
  return image;
}

}  // namespace bm::engine::vision
