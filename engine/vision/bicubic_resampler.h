#pragma once
// PIL's `Image.resize(size, Image.BICUBIC)` for 8-bit RGB (libImaging/Resample.c), which the Qwen2-VL image
// processor of transformers uses: a separable convolution, one pass per axis through an 8-bit intermediate; the
// cubic kernel (a = -0.5) is widened by the scale factor when shrinking (antialiasing), its
// weights normalized in double and then rounded to 22-bit fixed point; sums are rounded and clipped to 0..255.
// The same arithmetic in the same order gives the same bytes (tests/unit/engine/vision measure it).
#include <cstdint>

#include "engine/vision/rgb_image.h"

namespace bm::engine::vision {

// Which axis goes first. Pillow up to 12 always resamples horizontally first; Pillow 13 runs the vertical pass
// first when the height shrinks by more than twice as many pixels as the width. The uint8 intermediate makes the
// two differ by a few levels; the fixtures were made with Pillow 13.
enum class PassOrder { kPillow13, kHorizontalFirst };

// width and height > 0 (BM_CHECK); the same size returns a copy, as PIL does.
RgbImage resize_bicubic(const RgbImage& image, int32_t width, int32_t height, PassOrder order = PassOrder::kPillow13);

}  // namespace bm::engine::vision
