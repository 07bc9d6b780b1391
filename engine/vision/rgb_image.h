#pragma once
// An 8-bit RGB image, rows top to bottom, pixels interleaved (height x width x 3): what PIL's
// `Image.convert("RGB")` followed by `np.array` holds, and what the Qwen2-VL processor starts from.
#include <cstdint>
#include <vector>

namespace bm::engine::vision {

struct RgbImage {
  int32_t width = 0;
  int32_t height = 0;
  std::vector<uint8_t> pixels;  // width * height * 3
};

}  // namespace bm::engine::vision
