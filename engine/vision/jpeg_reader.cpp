#include "engine/vision/jpeg_reader.h"

#include <csetjmp>
#include <cstdio>
// jpeglib.h needs size_t and FILE declared first.
#include <jerror.h>
#include <jpeglib.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "engine/vision/image_decoder.h"

namespace bm::engine::vision {
namespace {

// libjpeg reports errors by longjmp; everything with a destructor lives in this heap job, made before setjmp.
struct JpegJob {
  jpeg_decompress_struct cinfo{};
  jpeg_error_mgr err{};
  std::jmp_buf jump{};
  std::string error;
  absl::Status status;
  DecodedImage image;
  bool created = false;
  ~JpegJob() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

void on_error_exit(j_common_ptr cinfo) {
  auto* job = static_cast<JpegJob*>(cinfo->client_data);
  char message[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, message);
  job->error = message;
  std::longjmp(job->jump, 1);
}

// Warnings are ignored as PIL ignores them ("Corrupt JPEG data: N extraneous bytes"), except the end of the data
// in the middle of the scan, which PIL refuses as a truncated file instead of showing libjpeg's gray filler.
void on_message(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    auto* job = static_cast<JpegJob*>(cinfo->client_data);
    job->error = "the data ends early (truncated file)";
    std::longjmp(job->jump, 1);
  }
}

}  // namespace

absl::StatusOr<DecodedImage> read_jpeg(std::string_view bytes, const DecodeLimits& limits) {
  auto job = std::make_unique<JpegJob>();
  JpegJob* const j = job.get();
  j->cinfo.err = jpeg_std_error(&j->err);
  j->err.error_exit = on_error_exit;
  j->err.emit_message = on_message;
  j->cinfo.client_data = j;
  if (setjmp(j->jump)) {
    return absl::InvalidArgumentError(absl::StrCat("The JPEG image is corrupt: ", j->error, "."));
  }
  jpeg_create_decompress(&j->cinfo);
  j->created = true;
  jpeg_mem_src(&j->cinfo, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  jpeg_read_header(&j->cinfo, TRUE);
  j->status = check_dimensions("The JPEG", j->cinfo.image_width, j->cinfo.image_height, limits);
  if (!j->status.ok()) return j->status;
  switch (j->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
      break;
    default:
      return absl::InvalidArgumentError("The JPEG image is CMYK or YCCK, which is not supported; send it as RGB.");
  }
  // PIL decodes with libjpeg's defaults (islow DCT, fancy upsampling); grayscale goes to RGB by replication,
  // as PIL's convert("RGB") of an L image does.
  j->cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&j->cinfo);
  if (j->cinfo.output_components != 3) {
    return absl::InvalidArgumentError("The JPEG image has an unexpected number of color components.");
  }
  j->image.width = static_cast<int32_t>(j->cinfo.output_width);
  j->image.height = static_cast<int32_t>(j->cinfo.output_height);
  j->image.channels = 3;
  const size_t stride = static_cast<size_t>(j->image.width) * 3;
  j->image.pixels.resize(stride * j->image.height);
  while (j->cinfo.output_scanline < j->cinfo.output_height) {
    JSAMPROW row = j->image.pixels.data() + stride * j->cinfo.output_scanline;
    jpeg_read_scanlines(&j->cinfo, &row, 1);
  }
  // Reading on to EOI makes a JPEG without it an error, as PIL ("image file is truncated") does.
  jpeg_finish_decompress(&j->cinfo);
  return std::move(j->image);
}

}  // namespace bm::engine::vision
