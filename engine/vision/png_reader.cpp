#include "engine/vision/png_reader.h"

#include <png.h>

#include <algorithm>
#include <csetjmp>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "engine/vision/image_decoder.h"

namespace bm::engine::vision {
namespace {

// libpng reports errors by longjmp. Everything with a destructor lives in this heap job, created before setjmp,
// so that the jump unwinds no C++ frame state.
struct PngJob {
  std::string_view bytes;
  size_t offset = 0;
  std::string error;
  DecodedImage image;
  std::vector<png_bytep> rows;
  std::vector<uint8_t> wide;  // 16-bit grayscale samples before PIL's clip to 255
  absl::Status size_status;
};

void on_error(png_structp png, png_const_charp message) {
  auto* job = static_cast<PngJob*>(png_get_error_ptr(png));
  job->error = message;
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}

void on_read(png_structp png, png_bytep out, png_size_t length) {
  auto* job = static_cast<PngJob*>(png_get_io_ptr(png));
  if (length > job->bytes.size() - job->offset) png_error(png, "the data ends early (truncated file)");
  std::memcpy(out, job->bytes.data() + job->offset, length);
  job->offset += length;
}

struct PngStructs {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngStructs() { png_destroy_read_struct(&png, info != nullptr ? &info : nullptr, nullptr); }
};

}  // namespace

absl::StatusOr<DecodedImage> read_png(std::string_view bytes, const DecodeLimits& limits) {
  auto job = std::make_unique<PngJob>();
  job->bytes = bytes;
  PngStructs structs;
  structs.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job.get(), on_error, on_warning);
  if (structs.png == nullptr) return absl::ResourceExhaustedError("Could not start the PNG decoder.");
  structs.info = png_create_info_struct(structs.png);
  if (structs.info == nullptr) return absl::ResourceExhaustedError("Could not start the PNG decoder.");
  png_structp png = structs.png;
  png_infop info = structs.info;
  PngJob* const j = job.get();
  if (setjmp(png_jmpbuf(png))) {
    return absl::InvalidArgumentError(absl::StrCat("The PNG image is corrupt: ", j->error, "."));
  }
  png_set_read_fn(png, j, on_read);
  // libpng's own size limit would refuse large headers with its own words; ours below names the limit.
  png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info);
  const png_uint_32 height = png_get_image_height(png, info);
  j->size_status = check_dimensions("The PNG", width, height, limits);
  if (!j->size_status.ok()) return j->size_status;
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  const bool has_trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
  // PIL opens 16-bit grayscale as mode I;16 and its convert("RGB") clips every sample to 255 instead of scaling.
  const bool clip_gray16 = color_type == PNG_COLOR_TYPE_GRAY && bit_depth == 16 && !has_trns;
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  // A transparency key makes PIL composite onto white (alpha 0 where the key matches).
  if (has_trns) png_set_tRNS_to_alpha(png);
  if (bit_depth == 16) {
    if (clip_gray16) {
      png_set_swap(png);  // little-endian host order for the clip below
    } else {
      png_set_strip_16(png);  // PIL keeps the high byte of 16-bit RGB(A) and LA samples
    }
  }
  if (!clip_gray16 && (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA)) {
    png_set_gray_to_rgb(png);
  }
  const int passes = png_set_interlace_handling(png);
  (void)passes;
  png_read_update_info(png, info);
  const size_t row_bytes = png_get_rowbytes(png, info);
  const int channels = png_get_channels(png, info);
  j->image.width = static_cast<int32_t>(width);
  j->image.height = static_cast<int32_t>(height);
  uint8_t* base = nullptr;
  if (clip_gray16) {
    j->wide.resize(row_bytes * height);
    base = j->wide.data();
  } else {
    if (channels != 3 && channels != 4) png_error(png, "unexpected channel layout after expansion");
    j->image.channels = channels;
    j->image.pixels.resize(row_bytes * height);
    base = j->image.pixels.data();
  }
  j->rows.resize(height);
  for (png_uint_32 y = 0; y < height; ++y) j->rows[y] = base + y * row_bytes;
  png_read_image(png, j->rows.data());
  // No png_read_end: what follows the image data (text chunks, IEND) does not change pixels, and PIL accepts a
  // file whose trailing chunks are missing or damaged.
  if (clip_gray16) {
    const size_t num_pixels = static_cast<size_t>(width) * height;
    j->image.channels = 3;
    j->image.pixels.resize(num_pixels * 3);
    for (size_t i = 0; i < num_pixels; ++i) {
      uint16_t v;
      std::memcpy(&v, j->wide.data() + 2 * i, 2);
      const uint8_t clipped = static_cast<uint8_t>(std::min<uint16_t>(v, 255));
      std::fill_n(j->image.pixels.data() + 3 * i, 3, clipped);
    }
  }
  return std::move(j->image);
}

}  // namespace bm::engine::vision
