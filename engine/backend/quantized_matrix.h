#pragma once
// A weight-only quantized linear weight (GPTQ / AWQ, 4 or 8 bits) as the backends see it. The model loader turns
// each checkpoint format into one neutral form, QuantizedMatrixSource (host memory), and a backend repacks that
// into its own kernel layout at load (Backend::copy_quantized_to_device); the packed bytes stay packed in memory
// and are dequantized inside the kernel. The meaning of the weights, whatever the layout:
//
//   W[j, c] = (q[c, j] - zero[g, j]) * scale[g, j]    for output j, input c, g = group of c,
//
// computed in F32 (scale widened from F16, the integer difference exact), and out = x · Wᵀ (+ bias).
#include <cstdint>
#include <span>
#include <vector>

namespace bm::engine {

struct QuantizedShape {
  int32_t bits = 4;          // 4 or 8
  int32_t group_size = 128;  // inputs per group; divides cols and is a multiple of 32 / bits
  int64_t rows = 0;          // output features
  int64_t cols = 0;          // input features
  bool permuted = false;     // the packed inputs are a permutation of the activation's columns (GPTQ desc_act)
  // The activation's columns when they are fewer than the packed inputs: a tensor-parallel rank's share of an
  // act-order row-parallel layer holds pieces of groups, each padded to whole packed groups with inputs that read
  // a zero activation (perm −1). 0: cols (no padding, the usual case).
  int64_t padded_from = 0;

  int32_t values_per_word() const { return 32 / bits; }
  int64_t inputs() const { return padded_from > 0 ? padded_from : cols; }
  int64_t num_groups() const { return cols / group_size; }
  bool operator==(const QuantizedShape&) const = default;
};

// The neutral host form. Inputs are in *packed order*: packed input i is activation column perm[i] when permuted
// (else i), and group g is packed inputs [g * group_size, (g + 1) * group_size). Sorting GPTQ's act-order inputs
// by group this way makes every group contiguous, so one kernel serves both GPTQ orders.
struct QuantizedMatrixSource {
  QuantizedShape shape;
  // [cols / values_per_word, rows]: word (w, j) holds q of packed inputs w * vpw + i, i = 0..vpw-1, for output j,
  // in bits [i * bits, (i + 1) * bits) — GPTQ's own packing (no interleave).
  std::span<const uint32_t> qweight;
  std::span<const uint16_t> scales;  // [num_groups, rows] F16 bits
  std::span<const uint8_t> zeros;    // [num_groups, rows] integer zero-points, < 2^bits + 1
  // [cols] when permuted, else empty: a permutation of [0, cols), or with padding (inputs() < cols) every
  // activation column [0, inputs()) once and −1 for each padding input.
  std::span<const int32_t> perm;
};

// F16 bits → F32, exact (subnormals, infinities and NaN included).
float f16_to_f32(uint16_t bits);

// The dense F32 matrix [rows, inputs()] (activation column order; padding inputs dropped) the source stands for: the
// plain reference the kernels are tested against, and what the format tests compare with the quantizers' own
// dequantization.
std::vector<float> dequantize(const QuantizedMatrixSource& source);

}  // namespace bm::engine
