#include "engine/vision/image_processor.h"

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "engine/vision/bicubic_resampler.h"

namespace bm::engine::vision {
namespace {

// rescale then normalize of one uint8 value, per channel: numpy computes u8.astype(float64) * factor, casts to
// float32, then (x - mean) / std with float32 mean and std. A table per channel gives the same floats.
std::array<std::array<float, 256>, 3> normalization_tables(const ProcessorConfig& config) {
  std::array<std::array<float, 256>, 3> tables;
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      const auto scaled = static_cast<float>(static_cast<double>(v) * config.rescale_factor);
      tables[c][v] = (scaled - config.image_mean[c]) / config.image_std[c];
    }
  }
  return tables;
}

}  // namespace

absl::StatusOr<ImageSize> processed_size(int64_t height, int64_t width, const ProcessorConfig& config,
                                         std::optional<PixelRange> range) {
  const PixelRange bounds = range.value_or(PixelRange{config.min_pixels, config.max_pixels});
  if (bounds.min_pixels <= 0 || bounds.max_pixels <= 0 || bounds.min_pixels > bounds.max_pixels) {
    return absl::InvalidArgumentError(absl::StrCat("min_pixels (", bounds.min_pixels, ") and max_pixels (",
                                                   bounds.max_pixels, ") must be positive and in order."));
  }
  return smart_resize(height, width, config.factor(), static_cast<double>(bounds.min_pixels),
                      static_cast<double>(bounds.max_pixels));
}

absl::StatusOr<int64_t> num_image_tokens(int64_t height, int64_t width, const ProcessorConfig& config,
                                         std::optional<PixelRange> range) {
  auto size = processed_size(height, width, config, range);
  if (!size.ok()) return size.status();
  return (size->height / config.patch_size) * (size->width / config.patch_size) /
         (int64_t{config.merge_size} * config.merge_size);
}

absl::StatusOr<PatchedMedia> preprocess_image(const RgbImage& image, const ProcessorConfig& config,
                                              std::optional<PixelRange> range) {
  auto size = processed_size(image.height, image.width, config, range);
  if (!size.ok()) return size.status();
  std::vector<RgbImage> frames;
  frames.push_back(resize_bicubic(image, static_cast<int32_t>(size->width), static_cast<int32_t>(size->height)));
  return patchify_frames(frames, config);
}

absl::StatusOr<PatchedMedia> patchify_frames(const std::vector<RgbImage>& frames, const ProcessorConfig& config) {
  if (frames.empty()) return absl::InvalidArgumentError("There are no frames to process.");
  const int64_t height = frames[0].height;
  const int64_t width = frames[0].width;
  const int64_t factor = config.factor();
  if (height <= 0 || width <= 0 || height % factor != 0 || width % factor != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("The frame size ", width, "x", height, " is not a positive multiple of ", factor, "."));
  }
  for (const RgbImage& frame : frames) {
    if (frame.height != height || frame.width != width) {
      return absl::InvalidArgumentError("The frames do not all have the same size.");
    }
    BM_CHECK(frame.pixels.size() == static_cast<size_t>(height * width * 3));
  }
  const int64_t tp = config.temporal_patch_size;
  const int64_t patch = config.patch_size;
  const int64_t merge = config.merge_size;
  const auto num_frames = static_cast<int64_t>(frames.size());
  PatchedMedia out;
  out.grid_thw = {(num_frames + tp - 1) / tp, height / patch, width / patch};
  out.num_patches = out.grid_thw[0] * out.grid_thw[1] * out.grid_thw[2];
  out.patch_dim = 3 * tp * patch * patch;
  out.num_tokens = out.num_patches / (merge * merge);
  out.pixel_values.resize(static_cast<size_t>(out.num_patches * out.patch_dim));
  const auto tables = normalization_tables(config);
  const int64_t blocks_h = out.grid_thw[1] / merge;
  const int64_t blocks_w = out.grid_thw[2] / merge;
  float* dst = out.pixel_values.data();
  for (int64_t t = 0; t < out.grid_thw[0]; ++t) {
    for (int64_t bh = 0; bh < blocks_h; ++bh) {
      for (int64_t bw = 0; bw < blocks_w; ++bw) {
        for (int64_t mh = 0; mh < merge; ++mh) {
          for (int64_t mw = 0; mw < merge; ++mw) {
            const int64_t y0 = (bh * merge + mh) * patch;
            const int64_t x0 = (bw * merge + mw) * patch;
            for (int64_t c = 0; c < 3; ++c) {
              for (int64_t tt = 0; tt < tp; ++tt) {
                // Frames past the end repeat the last one (HF pads the same way; a single image is two copies).
                const RgbImage& frame = frames[std::min(t * tp + tt, num_frames - 1)];
                for (int64_t py = 0; py < patch; ++py) {
                  const uint8_t* row = frame.pixels.data() + ((y0 + py) * width + x0) * 3 + c;
                  for (int64_t px = 0; px < patch; ++px) *dst++ = tables[c][row[px * 3]];
                }
              }
            }
          }
        }
      }
    }
  }
  BM_CHECK(dst == out.pixel_values.data() + out.pixel_values.size());
  return out;
}

}  // namespace bm::engine::vision
