#include "engine/vision/image_decoder.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "engine/vision/decoded_image.h"
#include "engine/vision/gif_reader.h"
#include "engine/vision/jpeg_reader.h"
#include "engine/vision/png_reader.h"
#include "engine/vision/webp_reader.h"

namespace bm::engine::vision {
namespace {

bool starts_with(std::string_view bytes, std::string_view magic) {
  return bytes.substr(0, magic.size()) == magic;
}

// PIL's Image.alpha_composite of an RGBA pixel over opaque white (libImaging/AlphaComposite.c): integer
// arithmetic with 7 extra bits and rounded divisions by 255. Written out rather than approximated because the
// processor's output must match to the uint8 level.
uint8_t composite_over_white(uint32_t color, uint32_t alpha) {
  if (alpha == 0) return 255;
  constexpr uint32_t kPrecisionBits = 7;
  const uint32_t blend = 255 * (255 - alpha);
  const uint32_t out_alpha_255 = alpha * 255 + blend;
  const uint32_t coef1 = alpha * 255 * 255 * (1u << kPrecisionBits) / out_alpha_255;
  const uint32_t coef2 = 255 * (1u << kPrecisionBits) - coef1;
  const uint32_t t = color * coef1 + 255 * coef2 + (0x80u << kPrecisionBits);
  return static_cast<uint8_t>((((t >> 8) + t) >> 8) >> kPrecisionBits);
}

RgbImage to_rgb(DecodedImage decoded) {
  RgbImage out;
  out.width = decoded.width;
  out.height = decoded.height;
  const size_t num_pixels = static_cast<size_t>(decoded.width) * static_cast<size_t>(decoded.height);
  BM_CHECK(decoded.pixels.size() == num_pixels * static_cast<size_t>(decoded.channels));
  if (decoded.channels == 3) {
    out.pixels = std::move(decoded.pixels);
    return out;
  }
  BM_CHECK(decoded.channels == 4);
  out.pixels.resize(num_pixels * 3);
  const uint8_t* in = decoded.pixels.data();
  uint8_t* dst = out.pixels.data();
  for (size_t i = 0; i < num_pixels; ++i, in += 4, dst += 3) {
    for (int c = 0; c < 3; ++c) dst[c] = composite_over_white(in[c], in[3]);
  }
  return out;
}

}  // namespace

absl::Status check_dimensions(const char* format, int64_t width, int64_t height, const DecodeLimits& limits) {
  if (width <= 0 || height <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(format, " image has an empty size (", width, "x", height, ")."));
  }
  if (width > limits.max_side || height > limits.max_side) {
    return absl::InvalidArgumentError(absl::StrCat(format, " image is ", width, "x", height, ", over the limit of ",
                                                   limits.max_side, " pixels per side."));
  }
  if (width * height > limits.max_pixels) {
    return absl::InvalidArgumentError(absl::StrCat(format, " image is ", width, "x", height, " (", width * height,
                                                   " pixels), over the limit of ", limits.max_pixels, " pixels."));
  }
  return absl::OkStatus();
}

ImageFormat sniff_image_format(std::string_view bytes) {
  if (starts_with(bytes, "\x89PNG\r\n\x1a\n")) return ImageFormat::kPng;
  if (starts_with(bytes, "\xff\xd8\xff")) return ImageFormat::kJpeg;
  if (starts_with(bytes, "RIFF") && bytes.size() >= 12 && bytes.substr(8, 4) == "WEBP") return ImageFormat::kWebp;
  if (starts_with(bytes, "GIF87a") || starts_with(bytes, "GIF89a")) return ImageFormat::kGif;
  return ImageFormat::kUnknown;
}

const char* image_format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::kUnknown:
      return "unknown";
    case ImageFormat::kPng:
      return "PNG";
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kWebp:
      return "WebP";
    case ImageFormat::kGif:
      return "GIF";
  }
  return "unknown";
}

absl::StatusOr<RgbImage> decode_image(std::string_view bytes, const DecodeLimits& limits) {
  absl::StatusOr<DecodedImage> decoded = absl::InvalidArgumentError("");
  switch (sniff_image_format(bytes)) {
    case ImageFormat::kUnknown:
      return absl::InvalidArgumentError(
          bytes.empty() ? "The image is empty."
                        : "The image is not PNG, JPEG, WebP or GIF (its leading bytes match none of them).");
    case ImageFormat::kPng:
      decoded = read_png(bytes, limits);
      break;
    case ImageFormat::kJpeg:
      decoded = read_jpeg(bytes, limits);
      break;
    case ImageFormat::kWebp:
      decoded = read_webp(bytes, limits);
      break;
    case ImageFormat::kGif:
      decoded = read_gif(bytes, limits);
      break;
  }
  if (!decoded.ok()) return decoded.status();
  return to_rgb(*std::move(decoded));
}

}  // namespace bm::engine::vision
