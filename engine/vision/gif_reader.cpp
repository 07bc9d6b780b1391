#include "engine/vision/gif_reader.h"

#include <gif_lib.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/vision/image_decoder.h"

namespace bm::engine::vision {
namespace {

struct GifSource {
  std::string_view bytes;
  size_t offset = 0;
};

int on_read(GifFileType* gif, GifByteType* out, int length) {
  auto* source = static_cast<GifSource*>(gif->UserData);
  const size_t n = std::min(static_cast<size_t>(std::max(length, 0)), source->bytes.size() - source->offset);
  std::memcpy(out, source->bytes.data() + source->offset, n);
  source->offset += n;
  return static_cast<int>(n);
}

struct GifCloser {
  void operator()(GifFileType* gif) const {
    int error = 0;
    DGifCloseFile(gif, &error);
  }
};

absl::Status corrupt(const GifFileType* gif) {
  const char* reason = gif != nullptr ? GifErrorString(gif->Error) : nullptr;
  return absl::InvalidArgumentError(
      absl::StrCat("The GIF image is corrupt or truncated: ", reason != nullptr ? reason : "unknown error", "."));
}

}  // namespace

// Only the first frame is read (what PIL shows before seek()); later frames are never decoded, so a file with
// many frames costs no more than its first.
absl::StatusOr<DecodedImage> read_gif(std::string_view bytes, const DecodeLimits& limits) {
  GifSource source{bytes};
  int error = 0;
  std::unique_ptr<GifFileType, GifCloser> gif(DGifOpen(&source, on_read, &error));
  if (gif == nullptr) {
    const char* reason = GifErrorString(error);
    return absl::InvalidArgumentError(
        absl::StrCat("The GIF image is corrupt: ", reason != nullptr ? reason : "unknown error", "."));
  }
  absl::Status size = check_dimensions("The GIF", gif->SWidth, gif->SHeight, limits);
  if (!size.ok()) return size;
  int transparent_index = -1;  // the Graphic Control Extension's transparent color, if any
  for (;;) {
    GifRecordType record;
    if (DGifGetRecordType(gif.get(), &record) == GIF_ERROR) return corrupt(gif.get());
    if (record == TERMINATE_RECORD_TYPE) return absl::InvalidArgumentError("The GIF image has no frame.");
    if (record == EXTENSION_RECORD_TYPE) {
      int code = 0;
      GifByteType* block = nullptr;
      if (DGifGetExtension(gif.get(), &code, &block) == GIF_ERROR) return corrupt(gif.get());
      if (code == GRAPHICS_EXT_FUNC_CODE && block != nullptr && block[0] >= 4) {
        if ((block[1] & 1) != 0) {
          transparent_index = block[4];
        } else {
          transparent_index = -1;
        }
      }
      while (block != nullptr) {
        if (DGifGetExtensionNext(gif.get(), &block) == GIF_ERROR) return corrupt(gif.get());
      }
      continue;
    }
    if (record != IMAGE_DESC_RECORD_TYPE) continue;
    if (DGifGetImageDesc(gif.get()) == GIF_ERROR) return corrupt(gif.get());
    const GifImageDesc& desc = gif->Image;
    const ColorMapObject* palette = desc.ColorMap != nullptr ? desc.ColorMap : gif->SColorMap;
    if (palette == nullptr) return absl::InvalidArgumentError("The GIF image has no color table.");
    if (desc.Width <= 0 || desc.Height <= 0 || desc.Left < 0 || desc.Top < 0) {
      return absl::InvalidArgumentError("The GIF image's first frame has an invalid position or size.");
    }
    // PIL grows the canvas when the first frame reaches past the logical screen.
    const int64_t width = std::max<int64_t>(gif->SWidth, int64_t{desc.Left} + desc.Width);
    const int64_t height = std::max<int64_t>(gif->SHeight, int64_t{desc.Top} + desc.Height);
    size = check_dimensions("The GIF", width, height, limits);
    if (!size.ok()) return size;
    // Outside the frame PIL leaves index 0, or the transparent index when there is one.
    std::vector<uint8_t> indices(static_cast<size_t>(width) * height,
                                 static_cast<uint8_t>(std::max(transparent_index, 0)));
    std::vector<uint8_t> line(desc.Width);
    std::vector<int> rows(desc.Height);
    if (desc.Interlace) {
      int r = 0;
      for (const auto& [start, step] : {std::pair{0, 8}, std::pair{4, 8}, std::pair{2, 4}, std::pair{1, 2}}) {
        for (int y = start; y < desc.Height; y += step) rows[r++] = y;
      }
    } else {
      for (int y = 0; y < desc.Height; ++y) rows[y] = y;
    }
    for (int i = 0; i < desc.Height; ++i) {
      if (DGifGetLine(gif.get(), line.data(), desc.Width) == GIF_ERROR) return corrupt(gif.get());
      std::memcpy(indices.data() + (static_cast<size_t>(desc.Top) + rows[i]) * width + desc.Left, line.data(),
                  line.size());
    }
    DecodedImage image;
    image.width = static_cast<int32_t>(width);
    image.height = static_cast<int32_t>(height);
    // A transparent index makes the HF processor composite onto white, as for any image with transparency.
    image.channels = transparent_index >= 0 ? 4 : 3;
    image.pixels.resize(indices.size() * image.channels);
    uint8_t* out = image.pixels.data();
    for (const uint8_t index : indices) {
      GifColorType color{0, 0, 0};
      if (index < palette->ColorCount) color = palette->Colors[index];
      out[0] = color.Red;
      out[1] = color.Green;
      out[2] = color.Blue;
      if (image.channels == 4) out[3] = transparent_index == index ? 0 : 255;
      out += image.channels;
    }
    return image;
  }
}

}  // namespace bm::engine::vision
