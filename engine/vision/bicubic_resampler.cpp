#include "engine/vision/bicubic_resampler.h"

#include <cmath>

#include "common/check.h"

namespace bm::engine::vision {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}
constexpr double kSupport = 2.0;

// Per output position: the first input index, how many inputs, and fixed-point weights (ksize per position).
struct Coefficients {
  int ksize = 0;
  std::vector<int> bounds;  // xmin, xcount per output
  std::vector<int32_t> weights;
};

// precompute_coeffs + normalize_coeffs_8bpc of Resample.c, expression by expression: the double rounding of
// each step decides which way a weight's last fixed-point bit falls.
Coefficients precompute(int in_size, int out_size) {
  const float in0 = 0.0f;
  const auto in1 = static_cast<float>(in_size);
  double scale = static_cast<double>(in1 - in0) / out_size;
  double filterscale = scale;
  if (filterscale < 1.0) filterscale = 1.0;
  const double support = kSupport * filterscale;
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(out_size) * 2);
  std::vector<double> kk(static_cast<size_t>(out_size) * c.ksize, 0.0);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* k = &kk[static_cast<size_t>(xx) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      const double w = bicubic_filter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x) {
      if (ww != 0.0) k[x] /= ww;
    }
    c.bounds[xx * 2] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  c.weights.resize(kk.size());
  for (size_t i = 0; i < kk.size(); ++i) {
    c.weights[i] = kk[i] < 0 ? static_cast<int32_t>(-0.5 + kk[i] * (1 << kPrecisionBits))
                             : static_cast<int32_t>(0.5 + kk[i] * (1 << kPrecisionBits));
  }
  return c;
}

uint8_t clip8(int32_t sum) {
  const int32_t v = sum >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Horizontal pass over rows [row0, row0 + num_rows) of `in`.
RgbImage resample_horizontal(const RgbImage& in, int out_width, int row0, int num_rows, const Coefficients& c) {
  RgbImage out;
  out.width = out_width;
  out.height = num_rows;
  out.pixels.resize(static_cast<size_t>(out_width) * num_rows * 3);
  for (int y = 0; y < num_rows; ++y) {
    const uint8_t* src = in.pixels.data() + static_cast<size_t>(y + row0) * in.width * 3;
    uint8_t* dst = out.pixels.data() + static_cast<size_t>(y) * out_width * 3;
    for (int xx = 0; xx < out_width; ++xx) {
      const int xmin = c.bounds[xx * 2];
      const int xcount = c.bounds[xx * 2 + 1];
      const int32_t* k = &c.weights[static_cast<size_t>(xx) * c.ksize];
      int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
      for (int x = 0; x < xcount; ++x) {
        const uint8_t* p = src + static_cast<size_t>(x + xmin) * 3;
        s0 += p[0] * k[x];
        s1 += p[1] * k[x];
        s2 += p[2] * k[x];
      }
      dst[xx * 3] = clip8(s0);
      dst[xx * 3 + 1] = clip8(s1);
      dst[xx * 3 + 2] = clip8(s2);
    }
  }
  return out;
}

RgbImage resample_vertical(const RgbImage& in, int out_height, const Coefficients& c) {
  RgbImage out;
  out.width = in.width;
  out.height = out_height;
  const size_t stride = static_cast<size_t>(in.width) * 3;
  out.pixels.resize(stride * out_height);
  for (int yy = 0; yy < out_height; ++yy) {
    const int ymin = c.bounds[yy * 2];
    const int ycount = c.bounds[yy * 2 + 1];
    const int32_t* k = &c.weights[static_cast<size_t>(yy) * c.ksize];
    uint8_t* dst = out.pixels.data() + yy * stride;
    for (size_t i = 0; i < stride; ++i) {
      int32_t s = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < ycount; ++y) s += in.pixels[(y + ymin) * stride + i] * k[y];
      dst[i] = clip8(s);
    }
  }
  return out;
}

}  // namespace

RgbImage resize_bicubic(const RgbImage& image, int32_t width, int32_t height, PassOrder order) {
  BM_CHECK(width > 0 && height > 0 && image.width > 0 && image.height > 0);
  BM_CHECK(image.pixels.size() == static_cast<size_t>(image.width) * image.height * 3);
  if (width == image.width && height == image.height) return image;
  const bool need_horizontal = width != image.width;
  const bool need_vertical = height != image.height;
  Coefficients vertical = precompute(image.height, height);
  // Pillow 13: when the height shrinks by more than twice as many pixels as the width, the vertical pass runs
  // first (fewer rows for the horizontal pass). The intermediate is rounded to uint8 either way, so the order
  // changes results by a level or a few.
  const int shrink_h = image.height - height;
  const int shrink_w = image.width - width;
  const bool vertical_first = order == PassOrder::kPillow13 && shrink_h > 0 && shrink_h > shrink_w * 2;
  if (vertical_first) {
    RgbImage temp = resample_vertical(image, height, vertical);
    if (!need_horizontal) return temp;
    return resample_horizontal(temp, width, 0, height, precompute(image.width, width));
  }
  if (!need_horizontal) return resample_vertical(image, height, vertical);
  // Only the input rows the vertical pass reads go through the horizontal pass.
  const int first_row = vertical.bounds[0];
  const int last_row = vertical.bounds[height * 2 - 2] + vertical.bounds[height * 2 - 1];
  for (int i = 0; i < height; ++i) vertical.bounds[i * 2] -= first_row;
  RgbImage temp = resample_horizontal(image, width, first_row, last_row - first_row, precompute(image.width, width));
  if (!need_vertical) return temp;
  return resample_vertical(temp, height, vertical);
}

}  // namespace bm::engine::vision
