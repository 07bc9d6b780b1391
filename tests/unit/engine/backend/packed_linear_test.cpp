// The packed-weight GEMM on each instruction path this CPU has, forced in turn, for BF16 and F16 weights, against
// scalar loops written from its definition, at shapes that leave tails everywhere: rows not a multiple of any tile
// (1, 3, 7, 13), k not a multiple of the vector width (k = 2 · odd), outputs not a multiple of the 64-wide panel.
// - The F32 paths run one fused multiply-add chain per output in k order, so they must equal the std::fma loop
//   bit for bit. F16 weights run the F32 chain on every path (the avx512-bf16 one included).
// - The bf16 path rounds x to bf16 (nearest even) and accumulates pairs of exact bf16 products in F32; the loop
//   does the same in double, and the two differ only by the F32 rounding of the running sum: |error| stays
//   below k · 2^-24 · sum|x·w| (we allow 1e-6 · sum|x·w|, far below the 2^-9 relative error a missed rounding
//   or a wrong pair would leave).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <random>
#include <vector>

#include "engine/backend/cpu/bf16.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cpu/gemm_path.h"
#include "engine/backend/cpu/kernels.h"

namespace bm::engine::cpu {
namespace {

struct Shape {
  int64_t n, k, m;
};
constexpr Shape kShapes[] = {{1, 2, 16},    {3, 18, 48},   {7, 130, 80},  {13, 66, 64},
                             {5, 896, 144}, {1, 126, 208}, {16, 64, 128}, {9, 256, 32}};

float bf16_round(float v) {
  return bf16_to_f32(f32_to_bf16(v));
}

uint16_t to_f16(float value) {
  const _Float16 half = static_cast<_Float16>(value);
  uint16_t bits;
  std::memcpy(&bits, &half, sizeof(bits));
  return bits;
}

// The weight's value, widened independently of the kernels' F16 widening (through the compiler's _Float16).
float weight_value(DType dtype, uint16_t bits) {
  if (dtype == DType::kBF16) return bf16_to_f32(bits);
  _Float16 half;
  std::memcpy(&half, &bits, sizeof(half));
  return static_cast<float>(half);
}

struct Problem {
  Shape shape;
  DType dtype;
  std::vector<float> x;
  std::vector<uint16_t> w;  // bf16 or f16 bits [m, k]
  std::vector<uint16_t> packed;
  std::vector<float> bias;
  float w_at(int64_t row, int64_t col) const { return weight_value(dtype, w[row * shape.k + col]); }
};

Problem make_problem(Shape shape, std::mt19937& rng, DType dtype = DType::kBF16) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Problem p{shape, dtype};
  p.x.resize(static_cast<size_t>(shape.n * shape.k));
  for (float& v : p.x) v = normal(rng);
  p.w.resize(static_cast<size_t>(shape.m * shape.k));
  // F16 weights include subnormals (|w| < 2^-14), which the widening must keep exact.
  for (uint16_t& v : p.w) {
    v = dtype == DType::kBF16 ? f32_to_bf16(normal(rng) * 0.1f) : to_f16(normal(rng) * 0.1f * (rng() % 7 ? 1 : 1e-4f));
  }
  p.bias.resize(static_cast<size_t>(shape.m));
  for (float& v : p.bias) v = normal(rng);
  if (packable_linear_weight(dtype, shape.m, shape.k)) {
    p.packed.resize(p.w.size());
    pack_linear_weight(dtype, p.w.data(), shape.m, shape.k, p.packed.data());
  }
  return p;
}

std::vector<float> run(ThreadPool& pool, GemmPath path, const Problem& p, bool with_bias) {
  std::vector<float> out(static_cast<size_t>(p.shape.n * p.shape.m), -1.0f);
  packed_linear(pool, path, p.x.data(), p.shape.n, p.shape.k, p.dtype, p.packed.data(), p.shape.m,
                with_bias ? ConstData{p.bias.data(), DType::kF32} : ConstData{}, out.data());
  return out;
}

class PackedLinearTest : public ::testing::TestWithParam<std::tuple<GemmPath, DType>> {
 protected:
  void SetUp() override {
    if (!cpu_has_gemm_path(path())) {
      GTEST_SKIP() << "this CPU has no " << gemm_path_name(path()) << " path";
    }
  }
  GemmPath path() const { return std::get<0>(GetParam()); }
  DType dtype() const { return std::get<1>(GetParam()); }
  std::mt19937 rng_{99};
};

TEST_P(PackedLinearTest, MatchesTheScalarDefinitionAtOddShapes) {
  for (int32_t threads : {1, 3}) {
    ThreadPool pool(threads);
    for (const Shape& shape : kShapes) {
      SCOPED_TRACE(testing::Message() << "n " << shape.n << " k " << shape.k << " m " << shape.m << ", " << threads
                                      << " threads");
      const Problem p = make_problem(shape, rng_, dtype());
      for (bool with_bias : {false, true}) {
        const std::vector<float> out = run(pool, path(), p, with_bias);
        for (int64_t i = 0; i < shape.n; ++i) {
          for (int64_t j = 0; j < shape.m; ++j) {
            const float bias = with_bias ? p.bias[j] : 0.0f;
            const float actual = out[i * shape.m + j];
            if (path() != GemmPath::kAvx512Bf16 || dtype() == DType::kF16) {
              float acc = 0;
              for (int64_t c = 0; c < shape.k; ++c) acc = std::fma(p.x[i * shape.k + c], p.w_at(j, c), acc);
              ASSERT_EQ(actual, acc + bias) << "row " << i << " output " << j;
            } else {
              double exact = 0, magnitude = 0;
              for (int64_t c = 0; c < shape.k; ++c) {
                const double product = double{bf16_round(p.x[i * shape.k + c])} * p.w_at(j, c);
                exact += product;
                magnitude += std::abs(product);
              }
              ASSERT_NEAR(actual, exact + bias, 1e-6 * magnitude + 1e-6 * std::abs(bias))
                  << "row " << i << " output " << j;
            }
          }
        }
      }
    }
  }
}

// A row's outputs are the same bits whether it came alone (decode) or among others (prefill).
TEST_P(PackedLinearTest, RowsDoNotDependOnTheBatch) {
  ThreadPool pool(2);
  const Problem all = make_problem(Shape{11, 194, 112}, rng_, dtype());
  const std::vector<float> batched = run(pool, path(), all, true);
  for (int64_t i = 0; i < all.shape.n; ++i) {
    Problem one = all;
    one.shape.n = 1;
    one.x.assign(all.x.begin() + i * all.shape.k, all.x.begin() + (i + 1) * all.shape.k);
    const std::vector<float> alone = run(pool, path(), one, true);
    for (int64_t j = 0; j < all.shape.m; ++j) ASSERT_EQ(alone[j], batched[i * all.shape.m + j]) << "row " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, PackedLinearTest,
                         ::testing::Combine(::testing::Values(GemmPath::kAvx512Bf16, GemmPath::kAvx512,
                                                              GemmPath::kAvx2, GemmPath::kScalar),
                                            ::testing::Values(DType::kBF16, DType::kF16)),
                         [](const auto& info) {
                           std::string name(gemm_path_name(std::get<0>(info.param)));
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name + (std::get<1>(info.param) == DType::kF16 ? "_f16" : "_bf16");
                         });

// The F32 paths agree with one another bit for bit (the same chain, only the vector width differs); F16 weights
// take that chain on the avx512-bf16 path too.
TEST(PackedLinearPathsTest, F32PathsAreBitIdentical) {
  std::mt19937 rng(5);
  ThreadPool pool(2);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    const Problem p = make_problem(Shape{10, 322, 208}, rng, dtype);
    const std::vector<float> scalar = run(pool, GemmPath::kScalar, p, true);
    for (GemmPath path : {GemmPath::kAvx512, GemmPath::kAvx2, GemmPath::kAvx512Bf16}) {
      if (cpu_has_gemm_path(path) && (path != GemmPath::kAvx512Bf16 || dtype == DType::kF16)) {
        EXPECT_EQ(run(pool, path, p, true), scalar) << gemm_path_name(path) << " " << dtype_name(dtype);
      }
    }
  }
}

// A packed table gives back its rows (the embedding lookup of a tied head), exactly.
TEST(PackedLinearPathsTest, PackedEmbeddingReturnsTheRows) {
  std::mt19937 rng(8);
  ThreadPool pool(2);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    const Problem p = make_problem(Shape{1, 130, 48}, rng, dtype);
    const std::vector<int32_t> ids = {0, 47, 16, 15, 3, 47};
    std::vector<float> out(ids.size() * 130, -1.0f);
    packed_embedding(pool, dtype, p.packed.data(), 48, 130, ids.data(), static_cast<int64_t>(ids.size()), out.data());
    for (size_t i = 0; i < ids.size(); ++i) {
      for (int64_t c = 0; c < 130; ++c) ASSERT_EQ(out[i * 130 + c], p.w_at(ids[i], c)) << "id " << ids[i] << " col " << c;
    }
  }
}

TEST(GemmPathTest, NamesParseAndBadOnesGetASentence) {
  EXPECT_EQ(*parse_gemm_path("scalar"), GemmPath::kScalar);
  EXPECT_EQ(*parse_gemm_path("auto"), best_gemm_path());
  // auto is bf16 activations where the CPU has avx512-bf16; f32 names the reference numerics on any CPU.
  EXPECT_EQ(best_gemm_path(), cpu_has_gemm_path(GemmPath::kAvx512Bf16) ? GemmPath::kAvx512Bf16 : best_f32_gemm_path());
  EXPECT_EQ(*parse_gemm_path("f32"), best_f32_gemm_path());
  EXPECT_NE(best_f32_gemm_path(), GemmPath::kAvx512Bf16);
  const absl::StatusOr<GemmPath> unknown = parse_gemm_path("amx");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().message(), "unknown CPU GEMM path 'amx' (auto, f32, avx512-bf16, avx512, avx2 or scalar)");
  for (GemmPath path : {GemmPath::kAvx512Bf16, GemmPath::kAvx512, GemmPath::kAvx2}) {
    const absl::StatusOr<GemmPath> parsed = parse_gemm_path(gemm_path_name(path));
    EXPECT_EQ(parsed.ok(), cpu_has_gemm_path(path)) << gemm_path_name(path);
    if (!parsed.ok()) {
      EXPECT_TRUE(absl::IsFailedPrecondition(parsed.status()));
    }
  }
}

// Through the backend: a weight loaded with copy_linear_weight_to_device is packed and gives what the row kernel
// gives for the same weight loaded plainly (F32 paths: the same sum up to rounding order), and embedding() reads
// its rows back; a shape the packing cannot take (m not a multiple of 16) stays in rows and still works.
TEST(PackedLinearBackendTest, PackedAndPlainWeightsAgree) {
  std::mt19937 rng(17);
  std::unique_ptr<Backend> backend = create_cpu_backend(CpuBackendOptions{2, best_f32_gemm_path()});
  for (const auto& [shape, dtype] : {std::pair{Shape{5, 96, 48}, DType::kBF16}, std::pair{Shape{4, 96, 20}, DType::kBF16},
                                     std::pair{Shape{5, 96, 48}, DType::kF16}, std::pair{Shape{4, 96, 20}, DType::kF16}}) {
    SCOPED_TRACE(testing::Message() << "m " << shape.m << " " << dtype_name(dtype));
    const Problem p = make_problem(shape, rng, dtype);
    auto tensor = [&](DType dtype, int64_t rows, int64_t cols) {
      std::unique_ptr<Buffer> buffer = *backend->allocate(rows * cols * dtype_size(dtype));
      Tensor t{buffer.get(), 0, dtype, rows, cols};
      return std::make_pair(std::move(buffer), t);
    };
    auto [xb, x] = tensor(DType::kF32, shape.n, shape.k);
    auto [pb, packed] = tensor(dtype, shape.m, shape.k);
    auto [wb, plain] = tensor(dtype, shape.m, shape.k);
    auto [ob1, out1] = tensor(DType::kF32, shape.n, shape.m);
    auto [ob2, out2] = tensor(DType::kF32, shape.n, shape.m);
    backend->copy_to_device(std::as_bytes(std::span(p.x)), x);
    backend->copy_linear_weight_to_device(std::as_bytes(std::span(p.w)), packed);
    backend->copy_to_device(std::as_bytes(std::span(p.w)), plain);
    backend->linear(x, packed, nullptr, out1);
    backend->linear(x, plain, nullptr, out2);
    std::vector<float> a(static_cast<size_t>(shape.n * shape.m)), b(a.size());
    backend->copy_to_host(out1, std::as_writable_bytes(std::span(a)));
    backend->copy_to_host(out2, std::as_writable_bytes(std::span(b)));
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-4 * (1 + std::abs(b[i]))) << i;
    auto [ib, ids] = tensor(DType::kI32, 1, 2);
    auto [eb1, rows1] = tensor(DType::kF32, 2, shape.k);
    auto [eb2, rows2] = tensor(DType::kF32, 2, shape.k);
    const std::vector<int32_t> id_values = {static_cast<int32_t>(shape.m - 1), 2};
    backend->copy_to_device(std::as_bytes(std::span(id_values)), ids);
    backend->embedding(packed, ids, rows1);
    backend->embedding(plain, ids, rows2);
    std::vector<float> e1(static_cast<size_t>(2 * shape.k)), e2(e1.size());
    backend->copy_to_host(rows1, std::as_writable_bytes(std::span(e1)));
    backend->copy_to_host(rows2, std::as_writable_bytes(std::span(e2)));
    EXPECT_EQ(e1, e2);
  }
}

}  // namespace
}  // namespace bm::engine::cpu
