// The CPU backend's weight-only quantized linear (GPTQ / AWQ, 4 and 8 bits) against the plain reference: the
// neutral matrix dequantized by dequantize() (quantized_matrix.h) and multiplied in double precision. Shapes are
// odd on purpose — output counts that are not a multiple of the 16-column tile, one group or many, permuted
// inputs (GPTQ act-order), batches that are not a multiple of the 4-row block. Agreement is the normalised
// squared error Σ(a-b)²/Σb² as in cpu_backend_test.cpp: the kernel factors the scale and zero-point out of each
// group's sum (scale · (Σ x·q − zero · Σ x)), which costs a little cancellation but stays near 1e-13; a wrong
// nibble, group or permutation shows as 1e-3 or more. 1e-10 separates them.
// The avx512-bf16 path (4-bit weights) is compared with the same product over the activations rounded to bf16,
// which is what it computes; it adds 128 to every weight to form exact bf16 pairs and takes (zero + 128) · Σ x
// back off, which costs some F32 cancellation (measured 4e-16 … 6e-13 here): the same 1e-10 holds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "engine/backend/cpu/bf16.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cpu/gemm_path.h"
#include "engine/backend/quantized_matrix.h"
#include "tests/unit/engine/backend/normalised_error.h"

namespace bm::engine {
namespace {

using kernel_check::kMaxNormalisedError;
using kernel_check::normalised_error;

uint16_t to_f16(float value) {
  const _Float16 half = static_cast<_Float16>(value);
  uint16_t bits;
  std::memcpy(&bits, &half, sizeof(bits));
  return bits;
}

// A random neutral matrix and the storage its spans point into.
struct RandomMatrix {
  std::vector<uint32_t> qweight;
  std::vector<uint16_t> scales;
  std::vector<uint8_t> zeros;
  std::vector<int32_t> perm;
  QuantizedMatrixSource source;
};

RandomMatrix random_matrix(std::mt19937& rng, const QuantizedShape& shape) {
  RandomMatrix m;
  std::uniform_int_distribution<uint32_t> word;
  std::uniform_int_distribution<int> zero(0, 1 << shape.bits);  // GPTQ v1 can decode a zero-point of 2^bits
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  m.qweight.resize(static_cast<size_t>(shape.cols / shape.values_per_word() * shape.rows));
  for (uint32_t& w : m.qweight) w = word(rng);
  m.scales.resize(static_cast<size_t>(shape.num_groups() * shape.rows));
  for (uint16_t& s : m.scales) s = to_f16(scale(rng));
  m.zeros.resize(m.scales.size());
  for (uint8_t& z : m.zeros) z = static_cast<uint8_t>(zero(rng));
  if (shape.permuted) {
    m.perm.assign(static_cast<size_t>(shape.cols), -1);  // −1: padding inputs (inputs() < cols)
    std::iota(m.perm.begin(), m.perm.begin() + shape.inputs(), 0);
    std::shuffle(m.perm.begin(), m.perm.end(), rng);
  }
  m.source = QuantizedMatrixSource{shape, m.qweight, m.scales, m.zeros, m.perm};
  return m;
}

// (threads, GEMM path): auto (bf16 activations for 4-bit layers where the CPU has avx512-bf16, F32 otherwise),
// the bf16 path where the CPU has it, and a forced F32 path (scalar: the quantized kernels' F32 clone is chosen by
// the CPU, not by the dense path, so this runs the same vector code as avx512 or avx2 would).
class QuantizedLinearTest : public ::testing::TestWithParam<std::tuple<int32_t, cpu::GemmPath>> {
 protected:
  void SetUp() override {
    const auto [threads, path] = GetParam();
    if (!cpu::cpu_has_gemm_path(path)) GTEST_SKIP() << "this CPU lacks " << cpu::gemm_path_name(path);
    backend_ = create_cpu_backend(CpuBackendOptions{threads, path});
  }
  // Whether this backend computes `bits`-bit layers on bf16 activations.
  bool bf16_activations(int32_t bits) const {
    cpu::GemmPath path = std::get<1>(GetParam());
    if (path == cpu::GemmPath::kAuto) path = cpu::best_gemm_path();
    return path == cpu::GemmPath::kAvx512Bf16 && bits == 4;
  }

  Tensor empty(DType dtype, int64_t rows, int64_t cols) {
    absl::StatusOr<std::unique_ptr<Buffer>> buffer = backend_->allocate(rows * cols * dtype_size(dtype));
    EXPECT_TRUE(buffer.ok());
    buffers_.push_back(std::move(*buffer));
    return Tensor{buffers_.back().get(), 0, dtype, rows, cols};
  }

  template <typename T>
  Tensor upload(const std::vector<T>& values, DType dtype, int64_t rows, int64_t cols) {
    Tensor tensor = empty(dtype, rows, cols);
    backend_->copy_to_device(std::as_bytes(std::span(values)), tensor);
    return tensor;
  }

  QuantizedMatrix upload(const QuantizedMatrixSource& source) {
    absl::StatusOr<int64_t> bytes = backend_->quantized_matrix_bytes(source.shape);
    EXPECT_TRUE(bytes.ok());
    QuantizedMatrix matrix{source.shape, empty(DType::kU8, 1, *bytes)};
    backend_->copy_quantized_to_device(source, matrix);
    return matrix;
  }

  std::vector<float> download(const Tensor& tensor) {
    std::vector<float> values(static_cast<size_t>(tensor.num_elements()));
    backend_->copy_to_host(tensor, std::as_writable_bytes(std::span(values)));
    return values;
  }

  std::mt19937 rng_{2024};
  std::unique_ptr<Backend> backend_;
  std::vector<std::unique_ptr<Buffer>> buffers_;
};

std::vector<float> random_floats(std::mt19937& rng, size_t count) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(count);
  for (float& v : values) v = normal(rng);
  return values;
}

TEST_P(QuantizedLinearTest, MatchesDequantizeThenMatmul) {
  struct Case {
    int32_t bits, group_size;
    int64_t rows, cols;
    bool permuted;
    int64_t inputs = 0;  // padded_from: a tensor-parallel rank's act-order share with padding inputs
  };
  for (const Case& c : std::vector<Case>{{4, 128, 16, 128, false},
                                         {4, 128, 37, 384, false},
                                         {4, 32, 40, 96, true},
                                         {8, 128, 130, 256, false},
                                         {8, 32, 24, 64, true},
                                         {4, 8, 5, 16, false},
                                         {8, 4, 3, 12, true},
                                         {4, 32, 24, 128, true, 77},
                                         {8, 8, 17, 48, true, 29}}) {
    const QuantizedShape shape{c.bits, c.group_size, c.rows, c.cols, c.permuted, c.inputs};
    const int64_t inputs = shape.inputs();
    const RandomMatrix matrix = random_matrix(rng_, shape);
    const QuantizedMatrix weight = upload(matrix.source);
    const std::vector<float> dense = dequantize(matrix.source);
    std::vector<float> bias_values = random_floats(rng_, static_cast<size_t>(c.rows));
    std::vector<uint16_t> bias_bits(bias_values.size());
    for (size_t j = 0; j < bias_values.size(); ++j) {
      bias_bits[j] = to_f16(bias_values[j]);
      bias_values[j] = f16_to_f32(bias_bits[j]);
    }
    const Tensor bias = upload(bias_bits, DType::kF16, 1, c.rows);
    for (const int64_t n : {1, 3, 4, 9}) {
      SCOPED_TRACE(testing::Message() << "bits=" << c.bits << " group=" << c.group_size << " rows=" << c.rows
                                      << " cols=" << c.cols << " permuted=" << c.permuted << " inputs=" << inputs
                                      << " n=" << n);
      const std::vector<float> x = random_floats(rng_, static_cast<size_t>(n * inputs));
      std::vector<float> x_seen = x;  // what the kernel multiplies with
      if (bf16_activations(c.bits))
        for (float& v : x_seen) v = cpu::bf16_to_f32(cpu::f32_to_bf16(v));
      std::vector<double> expected(static_cast<size_t>(n * c.rows));
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < c.rows; ++j) {
          double sum = bias_values[j];
          for (int64_t k = 0; k < inputs; ++k) sum += double{x_seen[i * inputs + k]} * dense[j * inputs + k];
          expected[i * c.rows + j] = sum;
        }
      }
      const Tensor out = empty(DType::kF32, n, c.rows);
      backend_->quantized_linear(upload(x, DType::kF32, n, inputs), weight, &bias, out);
      const double error = normalised_error(download(out), expected);
      EXPECT_LT(error, kMaxNormalisedError);
    }
  }
}

// A row's result must not depend on the rows beside it: prefill and decode of the same token agree bit for bit.
TEST_P(QuantizedLinearTest, RowsDoNotDependOnTheBatch) {
  for (const int32_t bits : {4, 8}) {
    const QuantizedShape shape{bits, 64, 50, 192, true};
    const RandomMatrix matrix = random_matrix(rng_, shape);
    const QuantizedMatrix weight = upload(matrix.source);
    const int64_t n = 11;
    const Tensor x = upload(random_floats(rng_, static_cast<size_t>(n * shape.cols)), DType::kF32, n, shape.cols);
    const Tensor all = empty(DType::kF32, n, shape.rows);
    backend_->quantized_linear(x, weight, nullptr, all);
    const std::vector<float> batched = download(all);
    for (int64_t i = 0; i < n; ++i) {
      const Tensor one = empty(DType::kF32, 1, shape.rows);
      backend_->quantized_linear(x.row_slice(i, 1), weight, nullptr, one);
      const std::vector<float> alone = download(one);
      EXPECT_TRUE(std::equal(alone.begin(), alone.end(), batched.begin() + i * shape.rows)) << "row " << i;
    }
  }
}

// F16 dense weights (the unquantized tensors of GPTQ/AWQ checkpoints) run through linear and embedding.
TEST_P(QuantizedLinearTest, F16DenseWeightsMatchTheLoop) {
  for (const auto& [n, k, m] :
       std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 64, 16}, {3, 37, 5}, {9, 133, 21}}) {
    const std::vector<float> x = random_floats(rng_, static_cast<size_t>(n * k));
    std::vector<float> w = random_floats(rng_, static_cast<size_t>(m * k));
    std::vector<uint16_t> bits(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      bits[i] = to_f16(w[i] * 0.1f);
      w[i] = f16_to_f32(bits[i]);
    }
    const Tensor out = empty(DType::kF32, n, m);
    backend_->linear(upload(x, DType::kF32, n, k), upload(bits, DType::kF16, m, k), nullptr, out);
    std::vector<double> expected(static_cast<size_t>(n * m));
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < m; ++j) {
        for (int64_t c = 0; c < k; ++c) expected[i * m + j] += double{x[i * k + c]} * w[j * k + c];
      }
    }
    EXPECT_LT(normalised_error(download(out), expected), kMaxNormalisedError) << "n=" << n << " k=" << k;

    const std::vector<int32_t> ids = {2, 0, static_cast<int32_t>(m - 1)};
    const Tensor rows = empty(DType::kF32, 3, k);
    backend_->embedding(upload(bits, DType::kF16, m, k), upload(ids, DType::kI32, 1, 3), rows);
    const std::vector<float> looked_up = download(rows);
    for (size_t r = 0; r < ids.size(); ++r) {
      EXPECT_TRUE(std::equal(looked_up.begin() + r * k, looked_up.begin() + (r + 1) * k, w.begin() + ids[r] * k));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(ThreadsAndPaths, QuantizedLinearTest,
                         ::testing::Combine(::testing::Values(1, 3),
                                            ::testing::Values(cpu::GemmPath::kAuto, cpu::GemmPath::kAvx512Bf16,
                                                              cpu::GemmPath::kScalar)));

TEST(QuantizedMatrixTest, F16ConversionIsExact) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    _Float16 half;
    const uint16_t b = static_cast<uint16_t>(bits);
    std::memcpy(&half, &b, sizeof(b));
    const float expected = static_cast<float>(half);
    const float actual = f16_to_f32(b);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(actual)) << bits;
    } else {
      EXPECT_EQ(std::bit_cast<uint32_t>(actual), std::bit_cast<uint32_t>(expected)) << bits;
    }
  }
}

// The packing convention, on numbers worked out by hand: word (w, j) holds packed inputs w*vpw .. w*vpw+vpw-1 of
// output j, lowest bits first; a permuted matrix puts packed input i at activation column perm[i].
TEST(QuantizedMatrixTest, DequantizeFollowsThePackingConvention) {
  // 4 bits, 2 outputs, 8 inputs, one group: output 0's inputs are 0..7, output 1's are 15, 14, ..., 8.
  const std::vector<uint32_t> qweight = {0x76543210u, 0x89abcdefu};
  const std::vector<uint16_t> scales = {to_f16(0.5f), to_f16(2.0f)};
  const std::vector<uint8_t> zeros = {8, 1};
  const std::vector<int32_t> perm = {7, 6, 5, 4, 3, 2, 1, 0};
  QuantizedMatrixSource source{QuantizedShape{4, 8, 2, 8, false}, qweight, scales, zeros, {}};
  const std::vector<float> dense = dequantize(source);
  for (int c = 0; c < 8; ++c) {
    EXPECT_EQ(dense[c], (c - 8) * 0.5f) << c;
    EXPECT_EQ(dense[8 + c], (15 - c - 1) * 2.0f) << c;
  }
  source.shape.permuted = true;
  source.perm = perm;
  const std::vector<float> permuted = dequantize(source);
  for (int c = 0; c < 8; ++c) EXPECT_EQ(permuted[c], (7 - c - 8) * 0.5f) << c;
  // 8 bits: four inputs per word.
  const std::vector<uint32_t> bytes = {0x04030201u, 0xff000080u};
  const std::vector<uint16_t> one = {to_f16(1.0f)};
  const std::vector<uint8_t> zero = {128};
  const std::vector<float> wide =
      dequantize(QuantizedMatrixSource{QuantizedShape{8, 8, 1, 8, false}, bytes, one, zero, {}});
  EXPECT_EQ(wide, (std::vector<float>{-127, -126, -125, -124, 0, -128, -128, 127}));
}

}  // namespace
}  // namespace bm::engine
