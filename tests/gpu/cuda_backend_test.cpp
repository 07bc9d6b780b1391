// Every CudaBackend op against the CPU reference backend on random inputs of real model shapes (Qwen2.5-0.5B,
// Qwen2.5-7B, Llama-3.1-8B / DeepSeek-R1-Distill-Llama-8B), through the Backend interface only: the CUDA backend
// comes from the plugin exactly as the engine loads it. Skips cleanly where no GPU is present, so it is registered
// in ctest everywhere and only does work on a GPU machine; where a GPU is present (or BMSERVER_REQUIRE_GPU=1) a
// backend that cannot be created fails every test with the reason instead (gpu_required.h).
//
// Agreement is the normalised error ||gpu - cpu||₂ / ||cpu||₂. Tolerances:
//   kF32Tolerance  1e-5  ops computed in F32 on both sides (embedding, norms, RoPE, elementwise, gather, store_kv,
//                        F32-weight GEMM, attention on the split-sequence kernel, which is F32 math on the same
//                        cache values)
//   kBf16Tolerance 1e-2  where the GPU rounds an F32 operand to bf16 on purpose: linear() with BF16 weights rounds
//                        the activations (the CPU keeps them F32), the tensor-core prefill attention rounds Q and the
//                        softmax probabilities (DESIGN §2: bf16 tolerance ~1e-2)
// Measured errors are printed (RecordProperty + stderr) so that a GPU run documents the actual margins.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/cpu/bf16.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cuda_plugin.h"
#include "engine/model/checkpoint.h"
#include "engine/model/safetensors_file.h"
#include "engine/models/model_loader.h"
#include "engine/models/vision_encoder.h"
#include "nlohmann/json.hpp"
#include "tests/gpu/gpu_required.h"
#include "tests/unit/engine/model/test_files.h"
#include "tests/unit/engine/models/random_checkpoint.h"

namespace bm::engine {
namespace {

constexpr double kF32Tolerance = 1e-5;
constexpr double kBf16Tolerance = 1e-2;

struct ModelShape {
  const char* name;
  int32_t hidden, heads, kv_heads, head_dim, intermediate, vocab;
};
constexpr ModelShape kQwen05{"Qwen2.5-0.5B", 896, 14, 2, 64, 4864, 151936};
constexpr ModelShape kQwen7{"Qwen2.5-7B", 3584, 28, 4, 128, 18944, 152064};
constexpr ModelShape kLlama8{"Llama-8B", 4096, 32, 8, 128, 14336, 128256};
constexpr ModelShape kShapes[] = {kQwen05, kQwen7, kLlama8};

double normalised_error(const std::vector<float>& actual, const std::vector<float>& expected) {
  EXPECT_EQ(actual.size(), expected.size());
  double error = 0, norm = 0;
  for (size_t i = 0; i < actual.size() && i < expected.size(); ++i) {
    if (!std::isfinite(actual[i])) return INFINITY;
    const double d = double{actual[i]} - double{expected[i]};
    error += d * d;
    norm += double{expected[i]} * expected[i];
  }
  return norm > 0 ? std::sqrt(error / norm) : std::sqrt(error);
}

void expect_close(const std::string& what, const std::vector<float>& gpu, const std::vector<float>& cpu,
                  double tolerance) {
  const double error = normalised_error(gpu, cpu);
  std::fprintf(stderr, "  %-60s normalised error %.3e (tolerance %.0e)\n", what.c_str(), error, tolerance);
  ::testing::Test::RecordProperty(what, std::to_string(error));
  EXPECT_LE(error, tolerance) << what;
}

// Normal values for small tensors; for large ones (embedding tables, 8B projections: hundreds of millions of
// values) a xorshift stream of uniform values with the same variance, many times faster to draw.
std::vector<float> random_floats(std::mt19937& rng, size_t count, float scale = 1.0f) {
  std::vector<float> values(count);
  if (count <= (size_t{1} << 20)) {
    std::normal_distribution<float> normal(0.0f, scale);
    for (float& v : values) v = normal(rng);
    return values;
  }
  uint64_t state = (uint64_t{rng()} << 32) | rng() | 1;
  const float unit = scale * std::sqrt(3.0f) / float(uint64_t{1} << 23);
  for (float& v : values) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    v = (float(state >> 40) - float(uint64_t{1} << 23)) * unit;  // uniform in [-sqrt(3), sqrt(3)) * scale
  }
  return values;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& values) {
  std::vector<uint16_t> bits(values.size());
  std::transform(values.begin(), values.end(), bits.begin(), cpu::f32_to_bf16);
  return bits;
}

// One backend and the buffers a test made on it.
class On {
 public:
  explicit On(Backend& backend) : backend_(backend) {}
  Tensor empty(DType dtype, int64_t rows, int64_t cols) {
    absl::StatusOr<std::unique_ptr<Buffer>> buffer = backend_.allocate(rows * cols * dtype_size(dtype));
    EXPECT_TRUE(buffer.ok()) << buffer.status();
    buffers_.push_back(std::move(*buffer));
    return Tensor{buffers_.back().get(), 0, dtype, rows, cols};
  }
  template <typename T>
  Tensor put(const std::vector<T>& values, DType dtype, int64_t rows, int64_t cols) {
    EXPECT_EQ(static_cast<int64_t>(values.size() * sizeof(T)), rows * cols * dtype_size(dtype));
    Tensor tensor = empty(dtype, rows, cols);
    backend_.copy_to_device(std::as_bytes(std::span(values)), tensor);
    return tensor;
  }
  std::vector<float> get(const Tensor& tensor) {
    std::vector<float> values(static_cast<size_t>(tensor.num_elements()));
    if (tensor.dtype == DType::kBF16) {
      std::vector<uint16_t> bits(values.size());
      backend_.copy_to_host(tensor, std::as_writable_bytes(std::span(bits)));
      std::transform(bits.begin(), bits.end(), values.begin(), cpu::bf16_to_f32);
    } else {
      EXPECT_EQ(tensor.dtype, DType::kF32);
      backend_.copy_to_host(tensor, std::as_writable_bytes(std::span(values)));
    }
    return values;
  }
  Backend* operator->() { return &backend_; }

 private:
  Backend& backend_;
  std::vector<std::unique_ptr<Buffer>> buffers_;
};

class CudaBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<Backend>> backend = create_cuda_backend(0);
    if (backend.ok()) {
      gpu_ = std::move(*backend).release();
    } else {
      skip_reason_ = new std::string(backend.status().ToString());
    }
    // The F32 reference on every layer (auto would give 4-bit layers bf16 activations on an avx512-bf16 CPU).
    cpu_ = create_cpu_backend(CpuBackendOptions{0, cpu::best_f32_gemm_path()}).release();
  }
  static void TearDownTestSuite() {
    delete gpu_;
    delete cpu_;
    delete skip_reason_;
    gpu_ = nullptr;
    cpu_ = nullptr;
    skip_reason_ = nullptr;
  }
  void SetUp() override {
    if (gpu_ == nullptr) BM_GPU_SKIP_OR_FAIL("no usable CUDA backend: " + (skip_reason_ ? *skip_reason_ : ""));
  }

  static Backend* gpu_;
  static Backend* cpu_;
  static std::string* skip_reason_;
};
Backend* CudaBackendTest::gpu_ = nullptr;
Backend* CudaBackendTest::cpu_ = nullptr;
std::string* CudaBackendTest::skip_reason_ = nullptr;

TEST_F(CudaBackendTest, ReportsItsDeviceMemory) {
  const MemoryInfo info = gpu_->memory_info();
  EXPECT_GT(info.total_bytes, int64_t{1} << 30);
  EXPECT_GT(info.free_bytes, 0);
  EXPECT_LE(info.free_bytes, info.total_bytes);
  EXPECT_EQ(gpu_->name(), "cuda");
}

TEST_F(CudaBackendTest, CopiesRoundTripAtOffsets) {
  On g(*gpu_);
  std::mt19937 rng(1);
  std::vector<float> values = random_floats(rng, 1000);
  Tensor t = g.put(values, DType::kF32, 10, 100);
  EXPECT_EQ(g.get(t.row_slice(3, 4)), std::vector<float>(values.begin() + 300, values.begin() + 700));
}

TEST_F(CudaBackendTest, Embedding) {
  for (const ModelShape& shape : kShapes) {
    std::mt19937 rng(2);
    const std::vector<uint16_t> table = to_bf16(random_floats(rng, size_t(shape.vocab) * shape.hidden));
    std::vector<int32_t> ids(37);
    std::uniform_int_distribution<int32_t> pick(0, shape.vocab - 1);
    for (int32_t& id : ids) id = pick(rng);
    ids[0] = 0;
    ids[1] = shape.vocab - 1;
    std::vector<float> results[2];
    int i = 0;
    for (Backend* b : {gpu_, cpu_}) {
      On on(*b);
      Tensor out = on.empty(DType::kF32, 37, shape.hidden);
      on->embedding(on.put(table, DType::kBF16, shape.vocab, shape.hidden), on.put(ids, DType::kI32, 1, 37), out);
      results[i++] = on.get(out);
    }
    expect_close(std::string("embedding ") + shape.name, results[0], results[1], kF32Tolerance);
    EXPECT_EQ(results[0], results[1]);  // a lookup is exact
  }
}

TEST_F(CudaBackendTest, RmsNormInPlaceAndOutOfPlace) {
  for (const ModelShape& shape : kShapes) {
    for (int64_t n : {1, 5, 300}) {
      std::mt19937 rng(3);
      const std::vector<float> x = random_floats(rng, size_t(n) * shape.hidden, 3.0f);
      const std::vector<uint16_t> w = to_bf16(random_floats(rng, shape.hidden));
      for (bool in_place : {false, true}) {
        std::vector<float> results[2];
        int i = 0;
        for (Backend* b : {gpu_, cpu_}) {
          On on(*b);
          Tensor xt = on.put(x, DType::kF32, n, shape.hidden);
          Tensor out = in_place ? xt : on.empty(DType::kF32, n, shape.hidden);
          on->rms_norm(xt, on.put(w, DType::kBF16, 1, shape.hidden), 1e-6f, out);
          results[i++] = on.get(out);
        }
        expect_close(std::string("rms_norm ") + shape.name + " n=" + std::to_string(n) + (in_place ? " in place" : ""),
                     results[0], results[1], kF32Tolerance);
      }
    }
  }
}

TEST_F(CudaBackendTest, AddRmsNormFusesTheResidualStream) {
  for (const ModelShape& shape : kShapes) {
    for (int64_t n : {1, 5, 300}) {
      std::mt19937 rng(13);
      const std::vector<float> x = random_floats(rng, size_t(n) * shape.hidden, 3.0f);
      const std::vector<float> r = random_floats(rng, size_t(n) * shape.hidden, 3.0f);
      const std::vector<uint16_t> w = to_bf16(random_floats(rng, shape.hidden));
      std::vector<float> sums[2], norms[2];
      int i = 0;
      for (Backend* b : {gpu_, cpu_}) {
        On on(*b);
        Tensor xt = on.put(x, DType::kF32, n, shape.hidden);
        Tensor rt = on.put(r, DType::kF32, n, shape.hidden);
        on->add_rms_norm(xt, rt, on.put(w, DType::kBF16, 1, shape.hidden), 1e-6f, rt);  // out over the residual
        sums[i] = on.get(xt);
        norms[i++] = on.get(rt);
      }
      const std::string name = std::string("add_rms_norm ") + shape.name + " n=" + std::to_string(n);
      EXPECT_EQ(sums[0], sums[1]) << name << ": one F32 addition";
      expect_close(name, norms[0], norms[1], kF32Tolerance);
    }
  }
}

// A recorded step (a CUDA graph) replays the same ops on the same buffers: new inputs uploaded before a replay give
// the results an op-by-op run gives for them; recording itself runs nothing.
TEST_F(CudaBackendTest, RecordedStepsReplayOnNewInputs) {
  const ModelShape& shape = kShapes[0];
  std::mt19937 rng(21);
  const std::vector<uint16_t> table = to_bf16(random_floats(rng, size_t(shape.vocab) * shape.hidden));
  const std::vector<uint16_t> w = to_bf16(random_floats(rng, shape.hidden));
  On on(*gpu_);
  Tensor table_t = on.put(table, DType::kBF16, shape.vocab, shape.hidden);
  Tensor w_t = on.put(w, DType::kBF16, 1, shape.hidden);
  Tensor ids = on.empty(DType::kI32, 1, 8);
  Tensor x = on.empty(DType::kF32, 8, shape.hidden);
  Tensor h = on.empty(DType::kF32, 8, shape.hidden);
  auto ops = [&] {
    on->embedding(table_t, ids, x);
    on->rms_norm(x, w_t, 1e-6f, h);
    on->add(x, h, x);
  };
  auto upload_ids = [&](const std::vector<int32_t>& v) { on->copy_to_device(std::as_bytes(std::span(v)), ids); };
  const std::vector<int32_t> first = {1, 2, 3, 4, 5, 6, 7, 8}, second = {900, 8, 77, 0, 5000, 3, 3, 12};
  upload_ids(first);
  ops();  // op by op, as DecoderLM runs a shape before recording it
  const std::vector<float> eager_first = on.get(x);
  upload_ids(second);
  ops();
  const std::vector<float> eager_second = on.get(x);
  const std::vector<float> before = on.get(x);
  ASSERT_TRUE(on->begin_capture().ok());
  ops();
  absl::StatusOr<std::unique_ptr<StepGraph>> graph = on->end_capture();
  ASSERT_TRUE(graph.ok()) << graph.status();
  EXPECT_EQ(on.get(x), before) << "recording ran the ops";
  upload_ids(first);
  on->replay(**graph);
  EXPECT_EQ(on.get(x), eager_first);
  upload_ids(second);
  on->replay(**graph);
  EXPECT_EQ(on.get(x), eager_second);
  EXPECT_TRUE(on->device_status().ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(on->end_capture().status()));
}

TEST_F(CudaBackendTest, Rope) {
  for (const ModelShape& shape : kShapes) {
    std::mt19937 rng(4);
    const int64_t n = 50;
    for (int32_t heads : {shape.heads, shape.kv_heads}) {
      const std::vector<float> x = random_floats(rng, size_t(n) * heads * shape.head_dim);
      std::vector<int32_t> positions(n);
      std::uniform_int_distribution<int32_t> pick(0, 32767);
      for (int32_t& p : positions) p = pick(rng);
      positions[0] = 0;
      std::vector<float> inv_freq(shape.head_dim / 2);
      for (size_t i = 0; i < inv_freq.size(); ++i) {
        inv_freq[i] = static_cast<float>(1.0 / std::pow(1e6, 2.0 * double(i) / shape.head_dim));
      }
      std::vector<float> results[2];
      int i = 0;
      for (Backend* b : {gpu_, cpu_}) {
        On on(*b);
        Tensor xt = on.put(x, DType::kF32, n, heads * shape.head_dim);
        on->rope(xt, on.put(positions, DType::kI32, 1, n), on.put(inv_freq, DType::kF32, 1, shape.head_dim / 2),
                 shape.head_dim);
        results[i++] = on.get(xt);
      }
      expect_close(std::string("rope ") + shape.name + " heads=" + std::to_string(heads), results[0], results[1],
                   kF32Tolerance);
    }
  }
}

TEST_F(CudaBackendTest, ElementwiseAndGather) {
  for (const ModelShape& shape : kShapes) {
    std::mt19937 rng(5);
    const int64_t n = 33;
    const std::vector<float> a = random_floats(rng, size_t(n) * shape.intermediate, 4.0f);
    const std::vector<float> b = random_floats(rng, size_t(n) * shape.intermediate);
    const std::vector<int32_t> rows = {32, 0, 7, 7};
    std::vector<float> silu[2], sum[2], gathered[2];
    int i = 0;
    for (Backend* backend : {gpu_, cpu_}) {
      On on(*backend);
      Tensor at = on.put(a, DType::kF32, n, shape.intermediate);
      Tensor bt = on.put(b, DType::kF32, n, shape.intermediate);
      Tensor out = on.empty(DType::kF32, n, shape.intermediate);
      on->silu_mul(at, bt, out);
      silu[i] = on.get(out);
      on->add(at, bt, at);  // in place, as the residual stream does
      sum[i] = on.get(at);
      Tensor picked = on.empty(DType::kF32, 4, shape.intermediate);
      on->gather_rows(at, on.put(rows, DType::kI32, 1, 4), picked);
      gathered[i] = on.get(picked);
      ++i;
    }
    expect_close(std::string("silu_mul ") + shape.name, silu[0], silu[1], kF32Tolerance);
    expect_close(std::string("add ") + shape.name, sum[0], sum[1], kF32Tolerance);
    EXPECT_EQ(sum[0], sum[1]);
    EXPECT_EQ(gathered[0], gathered[1]);
  }
}

// ---- the encoder ops (the Qwen2.5-VL vision tower; rope_table also serves the decoder's M-RoPE steps). All F32
// on both sides (kF32Tolerance). Vision shapes of Qwen2.5-VL-3B/7B: hidden 1280, 16 heads x 80.
constexpr int32_t kVisionHeads = 16;
constexpr int32_t kVisionHeadDim = 80;

TEST_F(CudaBackendTest, EncoderOpsAreAnnounced) {
  EXPECT_TRUE(gpu_->runs_encoder_ops());
}

TEST_F(CudaBackendTest, RopeTable) {
  struct Case {
    const char* name;
    int64_t n;
    int32_t heads, head_dim;
  };
  // The vision tower's 2-D RoPE (one 1024x1024 image: 5,476 patches) and the 7B decoder's M-RoPE rows.
  for (const Case& c : {Case{"vision 16x80 5476 rows", 5476, kVisionHeads, kVisionHeadDim},
                        Case{"Qwen2.5-VL-7B decoder 28x128 77 rows", 77, 28, 128},
                        Case{"Qwen2.5-VL-7B decoder kv 4x128 77 rows", 77, 4, 128}}) {
    std::mt19937 rng(21);
    const std::vector<float> x = random_floats(rng, size_t(c.n) * c.heads * c.head_dim);
    std::vector<float> cos(size_t(c.n) * (c.head_dim / 2)), sin(cos.size());
    std::uniform_real_distribution<float> angle(-300.0f, 300.0f);
    for (size_t i = 0; i < cos.size(); ++i) {
      const float a = angle(rng);
      cos[i] = std::cos(a);
      sin[i] = std::sin(a);
    }
    std::vector<float> results[2];
    int i = 0;
    for (Backend* b : {gpu_, cpu_}) {
      On on(*b);
      Tensor xt = on.put(x, DType::kF32, c.n, int64_t{c.heads} * c.head_dim);
      on->rope_table(xt, on.put(cos, DType::kF32, c.n, c.head_dim / 2), on.put(sin, DType::kF32, c.n, c.head_dim / 2),
                     c.head_dim);
      results[i++] = on.get(xt);
    }
    expect_close(std::string("rope_table ") + c.name, results[0], results[1], kF32Tolerance);
  }
}

TEST_F(CudaBackendTest, Gelu) {
  std::mt19937 rng(22);
  const int64_t n = 1369, d = 5120;  // the patch merger's GELU input for one 1024x1024 image (2 x 2 patches of 1280)
  std::vector<float> x = random_floats(rng, size_t(n * d), 3.0f);
  const float specials[] = {1e30f, -1e30f, 12.0f, -12.0f, 0.0f, -0.0f, 1e-30f, 3.0e38f, -3.0e38f};
  std::copy(std::begin(specials), std::end(specials), x.begin());
  std::vector<float> results[2], in_place[2];
  int i = 0;
  for (Backend* b : {gpu_, cpu_}) {
    On on(*b);
    Tensor xt = on.put(x, DType::kF32, n, d);
    Tensor out = on.empty(DType::kF32, n, d);
    on->gelu(xt, out);
    results[i] = on.get(out);
    on->gelu(xt, xt);
    in_place[i++] = on.get(xt);
  }
  expect_close("gelu 1369x5120 (+-1e30, +-3e38 included)", results[0], results[1], kF32Tolerance);
  EXPECT_EQ(results[0], in_place[0]);
  EXPECT_EQ(results[0][0], 1e30f);
  EXPECT_EQ(results[0][1], 0.0f);
  EXPECT_EQ(results[0][2], 12.0f);
}

// Runs segment_attention on both backends: q/k/v random (keys drifting along each segment so the running max of
// the online softmax moves), the segments given by their lengths.
void expect_segment_attention_close(Backend* gpu, Backend* cpu, const std::string& what,
                                    const std::vector<int32_t>& lengths, int32_t heads, int32_t kv_heads,
                                    int32_t head_dim) {
  std::vector<int32_t> starts = {0};
  for (int32_t len : lengths) starts.push_back(starts.back() + len);
  const int64_t n = starts.back();
  std::mt19937 rng(23);
  const std::vector<float> q = random_floats(rng, size_t(n) * heads * head_dim);
  std::vector<float> k = random_floats(rng, size_t(n) * kv_heads * head_dim);
  const std::vector<float> v = random_floats(rng, size_t(n) * kv_heads * head_dim);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < int64_t{kv_heads} * head_dim; ++c) k[r * kv_heads * head_dim + c] += 0.01f * float(r % 89);
  const AttentionShape shape{heads, kv_heads, head_dim, 1.0f / std::sqrt(float(head_dim))};
  std::vector<float> results[2];
  int i = 0;
  for (Backend* b : {gpu, cpu}) {
    On on(*b);
    Tensor out = on.empty(DType::kF32, n, int64_t{heads} * head_dim);
    on->segment_attention(on.put(q, DType::kF32, n, int64_t{heads} * head_dim),
                          on.put(k, DType::kF32, n, int64_t{kv_heads} * head_dim),
                          on.put(v, DType::kF32, n, int64_t{kv_heads} * head_dim),
                          on.put(starts, DType::kI32, 1, int64_t(starts.size())), shape, out);
    results[i++] = on.get(out);
    EXPECT_TRUE(on->device_status().ok()) << on->device_status();
  }
  expect_close("segment_attention " + what, results[0], results[1], kF32Tolerance);
}

TEST_F(CudaBackendTest, SegmentAttentionVisionWindows) {
  // One 1024x1024 image of the 3B/7B tower: 74 x 74 patches, windows of 8 x 8 patches (64 rows) with partial
  // windows at the right and bottom edges (74 = 9 * 8 + 2), as the window layers see them.
  std::vector<int32_t> windows;
  for (int32_t wy = 0; wy < 10; ++wy)
    for (int32_t wx = 0; wx < 10; ++wx) windows.push_back((wy < 9 ? 8 : 2) * (wx < 9 ? 8 : 2));
  expect_segment_attention_close(gpu_, cpu_, "vision windows 16x80 (5476 rows, 100 windows)", windows, kVisionHeads,
                                 kVisionHeads, kVisionHeadDim);
}

TEST_F(CudaBackendTest, SegmentAttentionFullFrames) {
  // Full-attention layers attend within a whole frame: two frames of a video (1,500 rows each: the CPU reference
  // keeps this check to seconds) and a lone row.
  expect_segment_attention_close(gpu_, cpu_, "vision frames 16x80 (1500, 1, 1500)", {1500, 1, 1500}, kVisionHeads,
                                 kVisionHeads, kVisionHeadDim);
}

TEST_F(CudaBackendTest, SegmentAttentionGqaAndOtherHeadDims) {
  expect_segment_attention_close(gpu_, cpu_, "GQA 28/4 x128, uneven", {1, 200, 0, 65, 3}, 28, 4, 128);
  expect_segment_attention_close(gpu_, cpu_, "14/2 x64, uneven", {130, 1, 64, 7}, 14, 2, 64);
  expect_segment_attention_close(gpu_, cpu_, "4/4 x100 (bucket 128)", {99, 2}, 4, 4, 100);
  expect_segment_attention_close(gpu_, cpu_, "2/1 x128 (the largest head_dim)", {70, 5}, 2, 1, 128);
  expect_segment_attention_close(gpu_, cpu_, "3/3 x32", {40, 1, 90}, 3, 3, 32);
}

// The whole vision tower on the GPU against transformers: the fixture of tests/unit/engine/models/
// vision_encoder_test.cpp (shrunk random-weight Qwen2.5-VL tower, F32 weights: every op stays F32 on the GPU too,
// the F32 GEMM included), the same bound (2e-5 of each tensor's largest reference magnitude; the CPU backend
// measures 1.6e-6, the emulated encoder ops too). Four inputs: one image, partial windows, two images, a video.
TEST_F(CudaBackendTest, VisionEncoderMatchesTransformers) {
  const char* source = std::getenv("BMSERVER_SOURCE_DIR");
  const std::filesystem::path dir =
      std::filesystem::path(source != nullptr ? source : ".") / "tests/data/models/qwen2_5_vl_vision";
  auto config = load_vision_config(dir);
  ASSERT_TRUE(config.ok()) << config.status() << " (set BMSERVER_SOURCE_DIR)";
  auto checkpoint = Checkpoint::open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  auto cases = SafetensorsFile::open(dir / "cases.safetensors");
  ASSERT_TRUE(cases.ok()) << cases.status();
  auto encoder = VisionEncoder::load(**checkpoint, *config, *gpu_);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  auto floats = [](const TensorInfo& info) {
    std::vector<float> out(static_cast<size_t>(info.num_elements()));
    if (info.dtype == DType::kF32) {
      std::memcpy(out.data(), info.data.data(), info.data.size());
    } else {  // BF16
      for (size_t i = 0; i < out.size(); ++i) {
        uint16_t bits;
        std::memcpy(&bits, info.data.data() + 2 * i, 2);
        out[i] = cpu::bf16_to_f32(bits);
      }
    }
    return out;
  };
  for (int c = 0; c < 4; ++c) {
    const std::string index = std::to_string(c);
    const TensorInfo* pixels = (*cases)->find("pixel_values_" + index);
    const TensorInfo* grid = (*cases)->find("grid_thw_" + index);
    const TensorInfo* want_info = (*cases)->find("embeds_" + index);
    ASSERT_TRUE(pixels != nullptr && grid != nullptr && want_info != nullptr) << index;
    std::vector<int32_t> g(static_cast<size_t>(grid->num_elements()));
    std::memcpy(g.data(), grid->data.data(), grid->data.size());
    std::vector<VisionGrid> grids;
    for (size_t j = 0; j + 2 < g.size(); j += 3) grids.push_back(VisionGrid{g[j], g[j + 1], g[j + 2]});
    auto embeds = (*encoder)->encode(floats(*pixels), grids);
    ASSERT_TRUE(embeds.ok()) << embeds.status();
    EXPECT_TRUE(gpu_->device_status().ok()) << gpu_->device_status();
    const std::vector<float> want = floats(*want_info);
    ASSERT_EQ(embeds->size(), want.size());
    double max_abs = 0, max_ref = 0;
    for (size_t j = 0; j < want.size(); ++j) {
      const double d = std::fabs(double{(*embeds)[j]} - want[j]);
      max_abs = std::isnan(d) ? INFINITY : std::max(max_abs, d);
      max_ref = std::max(max_ref, std::fabs(double{want[j]}));
    }
    const double relative = max_ref > 0 ? max_abs / max_ref : max_abs;
    std::fprintf(stderr, "  vision tower case %d (%zu grids): max |diff| %.3e, relative %.3e (bound 2e-5)\n", c,
                 grids.size(), max_abs, relative);
    ::testing::Test::RecordProperty("vision tower case " + index, std::to_string(relative));
    EXPECT_LE(relative, 2e-5) << "case " << c;
  }
}

// linear() on each projection of each model, for decode-like and prefill-like row counts.
TEST_F(CudaBackendTest, LinearBf16OnEveryProjection) {
  for (const ModelShape& shape : kShapes) {
    struct Projection {
      const char* name;
      int64_t m, k;
      bool bias;
    };
    const bool qwen = shape.head_dim == 64 || shape.heads == 28;
    const Projection projections[] = {
        {"q_proj", int64_t{shape.heads} * shape.head_dim, shape.hidden, qwen},
        {"k_proj", int64_t{shape.kv_heads} * shape.head_dim, shape.hidden, qwen},
        {"o_proj", shape.hidden, int64_t{shape.heads} * shape.head_dim, false},
        {"gate_proj", shape.intermediate, shape.hidden, false},
        {"down_proj", shape.hidden, shape.intermediate, false},
    };
    for (const Projection& p : projections) {
      std::mt19937 rng(6);
      const std::vector<uint16_t> w = to_bf16(random_floats(rng, size_t(p.m) * p.k, 1.0f / std::sqrt(float(p.k))));
      const std::vector<uint16_t> bias = to_bf16(random_floats(rng, size_t(p.m)));
      for (int64_t n : {1, 7, 128}) {
        const std::vector<float> x = random_floats(rng, size_t(n) * p.k);
        std::vector<float> results[2];
        int i = 0;
        for (Backend* b : {gpu_, cpu_}) {
          On on(*b);
          Tensor out = on.empty(DType::kF32, n, p.m);
          Tensor bias_t = on.put(bias, DType::kBF16, 1, p.m);
          on->linear(on.put(x, DType::kF32, n, p.k), on.put(w, DType::kBF16, p.m, p.k), p.bias ? &bias_t : nullptr,
                     out);
          results[i++] = on.get(out);
        }
        expect_close(std::string("linear ") + shape.name + " " + p.name + " n=" + std::to_string(n), results[0],
                     results[1], kBf16Tolerance);
      }
    }
  }
}

// Shapes and views cuBLASLt may have no algorithm for (odd k, so rows of 90 bytes; weights and outputs one element
// off their allocation's alignment): linear() must then take the next heuristic candidate or the plain kernel
// (gemm_fallback.cu) and still match the CPU — never fail the step (docs/cuda-backend.md, "linear").
TEST_F(CudaBackendTest, LinearOnOddShapesAndMisalignedViews) {
  struct Case {
    int64_t m, k;
  };
  for (DType dtype : {DType::kBF16, DType::kF32}) {
    for (const Case c : {Case{37, 45}, Case{5, 3}, Case{1000, 896}}) {
      std::mt19937 rng(31);
      const std::vector<float> wf = random_floats(rng, size_t(c.m) * c.k, 1.0f / std::sqrt(float(c.k)));
      const std::vector<uint16_t> wb = to_bf16(wf);
      for (int64_t n : {1, 19}) {
        const std::vector<float> x = random_floats(rng, size_t(n) * c.k);
        std::vector<float> results[2];
        int i = 0;
        for (Backend* b : {gpu_, cpu_}) {
          On on(*b);
          if (b == cpu_) {  // the reference, on ordinary views
            const Tensor w = dtype == DType::kBF16 ? on.put(wb, dtype, c.m, c.k) : on.put(wf, dtype, c.m, c.k);
            const Tensor out = on.empty(DType::kF32, n, c.m);
            on->linear(on.put(x, DType::kF32, n, c.k), w, nullptr, out);
            results[i++] = on.get(out);
            continue;
          }
          const int64_t size = dtype_size(dtype);
          // One element in: the views are only element-aligned.
          const Tensor w_whole = on.empty(dtype, 1, c.m * c.k + 1);
          const Tensor w{w_whole.buffer, w_whole.offset_bytes + size, dtype, c.m, c.k};
          if (dtype == DType::kBF16) {
            on->copy_to_device(std::as_bytes(std::span(wb)), w);
          } else {
            on->copy_to_device(std::as_bytes(std::span(wf)), w);
          }
          const Tensor x_whole = on.empty(DType::kF32, 1, n * c.k + 1);
          const Tensor xv{x_whole.buffer, x_whole.offset_bytes + 4, DType::kF32, n, c.k};
          on->copy_to_device(std::as_bytes(std::span(x)), xv);
          const Tensor out_whole = on.empty(DType::kF32, 1, n * c.m + 1);
          const Tensor out{out_whole.buffer, out_whole.offset_bytes + 4, DType::kF32, n, c.m};
          on->linear(xv, w, nullptr, out);
          results[i++] = on.get(out);
        }
        EXPECT_TRUE(gpu_->device_status().ok()) << gpu_->device_status();
        expect_close("linear " + std::string(dtype_name(dtype)) + " misaligned m=" + std::to_string(c.m) +
                         " k=" + std::to_string(c.k) + " n=" + std::to_string(n),
                     results[0], results[1], dtype == DType::kBF16 ? kBf16Tolerance : kF32Tolerance);
      }
    }
  }
}

TEST_F(CudaBackendTest, LinearLmHeadAndLongInputChunks) {
  std::mt19937 rng(7);
  {  // Qwen2.5-0.5B's tied lm_head: [151936, 896].
    const int64_t m = kQwen05.vocab, k = kQwen05.hidden, n = 3;
    const std::vector<uint16_t> w = to_bf16(random_floats(rng, size_t(m) * k, 1.0f / std::sqrt(float(k))));
    const std::vector<float> x = random_floats(rng, size_t(n) * k);
    std::vector<float> results[2];
    int i = 0;
    for (Backend* b : {gpu_, cpu_}) {
      On on(*b);
      Tensor out = on.empty(DType::kF32, n, m);
      on->linear(on.put(x, DType::kF32, n, k), on.put(w, DType::kBF16, m, k), nullptr, out);
      results[i++] = on.get(out);
    }
    expect_close("linear lm_head Qwen2.5-0.5B n=3", results[0], results[1], kBf16Tolerance);
  }
  {  // More activation elements than the BF16 scratch holds (32M): the GEMM runs in row chunks.
    const int64_t m = 64, k = kQwen7.intermediate, n = 2000;
    const std::vector<uint16_t> w = to_bf16(random_floats(rng, size_t(m) * k, 1.0f / std::sqrt(float(k))));
    const std::vector<float> x = random_floats(rng, size_t(n) * k);
    std::vector<float> results[2];
    int i = 0;
    for (Backend* b : {gpu_, cpu_}) {
      On on(*b);
      Tensor out = on.empty(DType::kF32, n, m);
      on->linear(on.put(x, DType::kF32, n, k), on.put(w, DType::kBF16, m, k), nullptr, out);
      results[i++] = on.get(out);
    }
    expect_close("linear chunked n=2000 k=18944", results[0], results[1], kBf16Tolerance);
  }
}

TEST_F(CudaBackendTest, LinearF32Weights) {
  std::mt19937 rng(8);
  const int64_t m = 1000, k = 896;
  const std::vector<float> w = random_floats(rng, size_t(m) * k, 1.0f / std::sqrt(float(k)));
  const std::vector<float> bias = random_floats(rng, size_t(m));
  for (int64_t n : {1, 64}) {
    const std::vector<float> x = random_floats(rng, size_t(n) * k);
    std::vector<float> results[2];
    int i = 0;
    for (Backend* b : {gpu_, cpu_}) {
      On on(*b);
      Tensor out = on.empty(DType::kF32, n, m);
      Tensor bias_t = on.put(bias, DType::kF32, 1, m);
      on->linear(on.put(x, DType::kF32, n, k), on.put(w, DType::kF32, m, k), &bias_t, out);
      results[i++] = on.get(out);
    }
    expect_close("linear f32 weights n=" + std::to_string(n), results[0], results[1], kF32Tolerance);
  }
}

// ---- paged KV cache and attention

struct SeqSpec {
  int32_t cached;  // tokens already in the cache
  int32_t fresh;   // query rows this step
};

struct AttentionResult {
  std::vector<float> out[2];    // gpu, cpu
  std::vector<float> cache[2];  // the K cache rows store_kv wrote, in token order
};

// Fills the cache of every sequence (cached + new tokens) through store_kv, in physical blocks scattered over
// the cache, then runs paged_attention for the new tokens, on both backends.
AttentionResult run_attention(Backend* gpu, Backend* cpu, const std::vector<SeqSpec>& seqs, int32_t heads,
                              int32_t kv_heads, int32_t head_dim, DType kv_dtype, uint32_t seed) {
  std::mt19937 rng(seed);
  const int32_t num_seqs = static_cast<int32_t>(seqs.size());
  int32_t total_blocks = 0, max_blocks = 0, total_tokens = 0, total_new = 0, max_query = 0, max_len = 0;
  for (const SeqSpec& s : seqs) {
    const int32_t len = s.cached + s.fresh;
    const int32_t blocks = (len + kKvBlockSize - 1) / kKvBlockSize;
    total_blocks += blocks;
    max_blocks = std::max(max_blocks, blocks);
    total_tokens += len;
    total_new += s.fresh;
    max_query = std::max(max_query, s.fresh);
    max_len = std::max(max_len, len);
  }
  const int32_t num_blocks = total_blocks + 5;
  std::vector<int32_t> physical(num_blocks);
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), rng);
  std::vector<int32_t> block_tables(size_t(num_seqs) * max_blocks, 0);
  std::vector<int32_t> slots, query_starts = {0}, seq_lens;
  int32_t next = 0;
  for (int32_t s = 0; s < num_seqs; ++s) {
    const int32_t len = seqs[s].cached + seqs[s].fresh;
    for (int32_t b = 0; b < (len + kKvBlockSize - 1) / kKvBlockSize; ++b) {
      block_tables[size_t(s) * max_blocks + b] = physical[next++];
    }
    for (int32_t p = 0; p < len; ++p) {
      slots.push_back(block_tables[size_t(s) * max_blocks + p / kKvBlockSize] * kKvBlockSize + p % kKvBlockSize);
    }
    query_starts.push_back(query_starts.back() + seqs[s].fresh);
    seq_lens.push_back(len);
  }
  const int64_t kv_cols = int64_t{kv_heads} * head_dim;
  const int64_t q_cols = int64_t{heads} * head_dim;
  const std::vector<float> k = random_floats(rng, size_t(total_tokens) * kv_cols);
  const std::vector<float> v = random_floats(rng, size_t(total_tokens) * kv_cols);
  const std::vector<float> q = random_floats(rng, size_t(total_new) * q_cols);
  AttentionResult result;
  int i = 0;
  for (Backend* b : {gpu, cpu}) {
    On on(*b);
    KvCacheLayer cache{on.empty(kv_dtype, int64_t{num_blocks} * kKvBlockSize, kv_cols),
                       on.empty(kv_dtype, int64_t{num_blocks} * kKvBlockSize, kv_cols)};
    on->store_kv(on.put(k, DType::kF32, total_tokens, kv_cols), on.put(v, DType::kF32, total_tokens, kv_cols),
                 on.put(slots, DType::kI32, 1, total_tokens), cache);
    AttentionMetadata metadata{num_seqs,
                               on.put(query_starts, DType::kI32, 1, num_seqs + 1),
                               on.put(seq_lens, DType::kI32, 1, num_seqs),
                               on.put(block_tables, DType::kI32, num_seqs, max_blocks),
                               max_query,
                               max_len};
    Tensor out = on.empty(DType::kF32, total_new, q_cols);
    on->paged_attention(on.put(q, DType::kF32, total_new, q_cols), cache, metadata,
                        AttentionShape{heads, kv_heads, head_dim, 1.0f / std::sqrt(float(head_dim))}, out);
    result.out[i] = on.get(out);
    // Only the rows store_kv wrote: the rest of the cache is uninitialised memory on both sides.
    const std::vector<float> whole = on.get(cache.k);
    for (int32_t slot : slots) {
      result.cache[i].insert(result.cache[i].end(), whole.begin() + int64_t{slot} * kv_cols,
                             whole.begin() + (int64_t{slot} + 1) * kv_cols);
    }
    ++i;
  }
  return result;
}

TEST_F(CudaBackendTest, StoreKvWritesTheSameCache) {
  for (DType dtype : {DType::kBF16, DType::kF32}) {
    AttentionResult r = run_attention(gpu_, cpu_, {{0, 40}, {3, 9}}, 14, 2, 64, dtype, 9);
    EXPECT_EQ(r.cache[0], r.cache[1]) << dtype_name(dtype);
  }
}

// Decode steps (one query row per sequence) over long, uneven contexts: the split-sequence kernel and its
// combine step, GQA groups of 7 and 4.
TEST_F(CudaBackendTest, DecodeAttentionLongContexts) {
  const std::vector<SeqSpec> batch = {{0, 1}, {16, 1}, {99, 1}, {512, 1}, {1023, 1}, {2047, 1}, {3999, 1}, {4095, 1}};
  for (const ModelShape& shape : kShapes) {
    for (DType dtype : {DType::kBF16, DType::kF32}) {
      AttentionResult r = run_attention(gpu_, cpu_, batch, shape.heads, shape.kv_heads, shape.head_dim, dtype, 10);
      expect_close(std::string("decode attention 8 seqs to 4k ") + shape.name + " " + std::string(dtype_name(dtype)),
                   r.out[0], r.out[1], kF32Tolerance * 10);
    }
    // One sequence: the most splits per row.
    AttentionResult single =
        run_attention(gpu_, cpu_, {{4095, 1}}, shape.heads, shape.kv_heads, shape.head_dim, DType::kBF16, 11);
    expect_close(std::string("decode attention 1 seq 4k ") + shape.name, single.out[0], single.out[1],
                 kF32Tolerance * 10);
  }
}

// Mixed steps: long prefills (tensor-core kernel for BF16 and head_dim 64/128), a chunk after a cached prefix,
// short tails and decodes in the same batch (split-sequence kernel), uneven lengths not multiples of 16 or 64.
TEST_F(CudaBackendTest, PrefillAttentionMixedBatch) {
  const std::vector<SeqSpec> batch = {{0, 300}, {0, 5}, {128, 77}, {1000, 1}, {33, 64}, {0, 8}, {7, 7}};
  for (const ModelShape& shape : kShapes) {
    AttentionResult bf16 =
        run_attention(gpu_, cpu_, batch, shape.heads, shape.kv_heads, shape.head_dim, DType::kBF16, 12);
    expect_close(std::string("mixed prefill attention ") + shape.name + " BF16 (tensor cores)", bf16.out[0],
                 bf16.out[1], kBf16Tolerance);
    AttentionResult f32 =
        run_attention(gpu_, cpu_, batch, shape.heads, shape.kv_heads, shape.head_dim, DType::kF32, 12);
    expect_close(std::string("mixed prefill attention ") + shape.name + " F32 (split-sequence)", f32.out[0], f32.out[1],
                 kF32Tolerance * 10);
  }
}

TEST_F(CudaBackendTest, PrefillAttentionLongSingleSequence) {
  for (const ModelShape& shape : {kQwen05, kQwen7}) {
    AttentionResult r =
        run_attention(gpu_, cpu_, {{512, 1536}}, shape.heads, shape.kv_heads, shape.head_dim, DType::kBF16, 13);
    expect_close(std::string("prefill attention 1536 after 512 cached ") + shape.name, r.out[0], r.out[1],
                 kBf16Tolerance);
  }
}

// A whole decoder on both backends: a small random Qwen2 checkpoint (head_dim 64), a prefill of two sequences
// and a decode step, BF16 KV cache on both. Logits agree within the bf16 tolerance and the argmax tokens match.
TEST_F(CudaBackendTest, WholeDecoderMatchesCpu) {
  testing::TempDir dir;
  testing::RandomCheckpointShape shape;
  shape.hidden_size = 512;
  shape.intermediate_size = 1024;
  shape.num_heads = 8;
  shape.num_kv_heads = 2;
  shape.num_layers = 3;
  shape.vocab_size = 2000;
  ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), shape));
  std::vector<float> logits[2];
  int i = 0;
  for (const char* backend : {"cuda", "cpu"}) {
    LoadOptions options;
    options.backend = backend;
    options.kv_cache_dtype = DType::kBF16;
    absl::StatusOr<std::unique_ptr<CausalLM>> lm = load_causal_lm(dir.path(), options);
    ASSERT_TRUE(lm.ok()) << lm.status();
    ASSERT_TRUE((*lm)->allocate_kv_cache(16).ok());
    std::vector<int32_t> prompt_a(70), prompt_b(9);
    std::iota(prompt_a.begin(), prompt_a.end(), 5);
    std::iota(prompt_b.begin(), prompt_b.end(), 900);
    ForwardBatch prefill;
    prefill.token_ids = prompt_a;
    prefill.token_ids.insert(prefill.token_ids.end(), prompt_b.begin(), prompt_b.end());
    prefill.sequences = {SequenceChunk{0, 70, {3, 7, 1, 9, 0}, true}, SequenceChunk{0, 9, {12}, true}};
    std::vector<float> step;
    ASSERT_TRUE((*lm)->forward(prefill, step).ok());
    logits[i].insert(logits[i].end(), step.begin(), step.end());
    ForwardBatch decode{{11, 22}, {SequenceChunk{70, 1, {3, 7, 1, 9, 0}, true}, SequenceChunk{9, 1, {12}, true}}};
    ASSERT_TRUE((*lm)->forward(decode, step).ok());
    logits[i].insert(logits[i].end(), step.begin(), step.end());
    ++i;
  }
  // Three layers of bf16-rounded activations: the GPU's error compounds a little over a single op's.
  expect_close("whole decoder logits (random Qwen2, 3 layers)", logits[0], logits[1], 2 * kBf16Tolerance);
  ASSERT_EQ(logits[0].size(), logits[1].size());
  for (size_t row = 0; row < logits[0].size() / 2000; ++row) {
    const auto begin = [&](const std::vector<float>& l) { return l.begin() + row * 2000; };
    const size_t gpu_top = std::max_element(begin(logits[0]), begin(logits[0]) + 2000) - begin(logits[0]);
    const float cpu_max = *std::max_element(begin(logits[1]), begin(logits[1]) + 2000);
    // The GPU's greedy token is the CPU's, or a near tie on the CPU (within 0.05 of the maximum logit).
    EXPECT_GE(begin(logits[1])[gpu_top], cpu_max - 0.05f) << "row " << row;
  }
}

// ---- weight-only quantized linear (GPTQ / AWQ): the packed kernels against the CPU backend's

// A random GPTQ/AWQ-like matrix in the neutral host form (quantized_matrix.h), owning its arrays.
struct RandomQuantized {
  std::vector<uint32_t> qweight;
  std::vector<uint16_t> scales;
  std::vector<uint8_t> zeros;
  std::vector<int32_t> perm;
  QuantizedMatrixSource source() const { return QuantizedMatrixSource{shape, qweight, scales, zeros, perm}; }
  QuantizedShape shape;
};

RandomQuantized random_quantized(std::mt19937& rng, const QuantizedShape& shape) {
  RandomQuantized m;
  m.shape = shape;
  m.qweight.resize(static_cast<size_t>(shape.cols / shape.values_per_word() * shape.rows));
  for (uint32_t& w : m.qweight) w = static_cast<uint32_t>(rng());
  // Scales about 1 / (2^bits · sqrt(cols)) so the outputs stay near unit size: F16 bits of 2^e, e in a small range.
  const int exponent = 15 - shape.bits - static_cast<int>(std::log2(std::sqrt(double(shape.cols))));
  std::uniform_int_distribution<int> e(exponent - 1, exponent), mantissa(0, 1023);
  m.scales.resize(static_cast<size_t>(shape.num_groups() * shape.rows));
  for (uint16_t& v : m.scales) v = static_cast<uint16_t>(e(rng) << 10 | mantissa(rng));
  std::uniform_int_distribution<int> zero(0, (1 << shape.bits) - 1);
  m.zeros.resize(m.scales.size());
  for (uint8_t& z : m.zeros) z = static_cast<uint8_t>(zero(rng));
  if (shape.permuted) {
    m.perm.resize(static_cast<size_t>(shape.cols));
    std::iota(m.perm.begin(), m.perm.end(), 0);
    std::shuffle(m.perm.begin(), m.perm.end(), rng);
  }
  return m;
}

// Up to 8 rows the GEMV kernel computes in F32 like the CPU; above, the tensor-core GEMM rounds the activations and
// the dequantized weights to BF16.
TEST_F(CudaBackendTest, QuantizedLinearOnQwen7bProjections) {
  struct Projection {
    const char* name;
    int64_t m, k;
  };
  const Projection projections[] = {{"q_proj", 3584, 3584}, {"k_proj", 512, 3584}, {"down_proj", 3584, 18944}};
  struct Format {
    const char* name;
    int32_t bits;
    bool permuted;
  };
  const Format formats[] = {{"int4", 4, false}, {"int4 act-order", 4, true}, {"int8", 8, false}};
  for (const Projection& p : projections) {
    for (const Format& f : formats) {
      std::mt19937 rng(21);
      const RandomQuantized matrix = random_quantized(rng, QuantizedShape{f.bits, 128, p.m, p.k, f.permuted});
      const std::vector<uint16_t> bias = to_bf16(random_floats(rng, size_t(p.m)));
      for (int64_t n : {1, 3, 8, 16, 64, 129}) {
        const std::vector<float> x = random_floats(rng, size_t(n) * p.k);
        std::vector<float> results[2];
        int i = 0;
        for (Backend* b : {gpu_, cpu_}) {
          On on(*b);
          absl::StatusOr<int64_t> bytes = b->quantized_matrix_bytes(matrix.shape);
          ASSERT_TRUE(bytes.ok()) << bytes.status();
          const QuantizedMatrix w{matrix.shape, on.empty(DType::kU8, 1, *bytes)};
          b->copy_quantized_to_device(matrix.source(), w);
          Tensor out = on.empty(DType::kF32, n, p.m);
          Tensor bias_t = on.put(bias, DType::kBF16, 1, p.m);
          b->quantized_linear(on.put(x, DType::kF32, n, p.k), w, n == 3 ? &bias_t : nullptr, out);
          results[i++] = on.get(out);
        }
        expect_close(std::string("quantized_linear ") + p.name + " " + f.name + " n=" + std::to_string(n), results[0],
                     results[1], n <= 8 ? kF32Tolerance : kBf16Tolerance);
      }
    }
  }
}

// A whole GPTQ / AWQ model (random, F16 float tensors as the quantizers write them) on both backends: the CUDA
// backend receives the F16 tensors as BF16 and runs the packed kernels.
TEST_F(CudaBackendTest, QuantizedDecoderMatchesCpu) {
  for (const auto& [scheme, desc_act] : std::vector<std::pair<std::string, bool>>{
           {"gptq-int4", false}, {"gptq-int4", true}, {"gptq-int8", false}, {"awq-int4", false}}) {
    SCOPED_TRACE(scheme + (desc_act ? " desc_act" : ""));
    testing::TempDir dir;
    testing::RandomCheckpointShape shape;
    shape.quantization = scheme;
    shape.desc_act = desc_act;
    ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), shape));
    std::vector<float> logits[2];
    int i = 0;
    for (const char* backend : {"cuda", "cpu"}) {
      LoadOptions options;
      options.backend = backend;
      options.kv_cache_dtype = DType::kBF16;
      absl::StatusOr<std::unique_ptr<CausalLM>> lm = load_causal_lm(dir.path(), options);
      ASSERT_TRUE(lm.ok()) << lm.status();
      EXPECT_EQ((*lm)->info().quantization, scheme);
      ASSERT_TRUE((*lm)->allocate_kv_cache(16).ok());
      std::vector<int32_t> prompt(40);
      std::iota(prompt.begin(), prompt.end(), 5);
      std::vector<float> step;
      // A prefill of 40 tokens (the GEMM kernel) and two decode steps (the GEMV kernel).
      ASSERT_TRUE((*lm)->forward(ForwardBatch{prompt, {SequenceChunk{0, 40, {0, 1, 2}, true}}}, step).ok());
      logits[i].insert(logits[i].end(), step.begin(), step.end());
      for (int32_t t = 0; t < 2; ++t) {
        ASSERT_TRUE((*lm)->forward(ForwardBatch{{7 + t}, {SequenceChunk{40 + t, 1, {0, 1, 2}, true}}}, step).ok());
        logits[i].insert(logits[i].end(), step.begin(), step.end());
      }
      ++i;
    }
    expect_close("quantized decoder logits (" + scheme + (desc_act ? " desc_act" : "") + ")", logits[0], logits[1],
                 2 * kBf16Tolerance);
  }
}

// The seven committed GPTQ / AWQ checkpoints (tests/data/models, made by gptqmodel's own packers) against the
// logits of the quantizer's kernels recorded in their reference.json, which the CPU backend matches within 6e-3
// (quantized_model_test.cpp): prefill logits within the BF16 tolerance, and the first greedy token the recorded
// one or a near tie.
TEST_F(CudaBackendTest, CommittedQuantizedCheckpointsMatchTheQuantizersKernels) {
  const char* source = std::getenv("BMSERVER_SOURCE_DIR");
  const std::filesystem::path models = std::filesystem::path(source != nullptr ? source : ".") / "tests/data/models";
  for (const char* model : {"qwen2-gptq-int4", "qwen2-gptq-int4-act", "qwen2-gptq-int8", "qwen2-gptq-int8-act",
                            "qwen2-awq", "llama3-gptq-int4-act", "llama3-awq"}) {
    SCOPED_TRACE(model);
    std::ifstream in(models / model / "reference.json");
    ASSERT_TRUE(in) << "no " << (models / model / "reference.json") << " (set BMSERVER_SOURCE_DIR)";
    const nlohmann::json record = nlohmann::json::parse(in);
    LoadOptions options;
    options.backend = "cuda";
    absl::StatusOr<std::unique_ptr<CausalLM>> lm = load_causal_lm(models / model, options);
    ASSERT_TRUE(lm.ok()) << lm.status();
    ASSERT_TRUE((*lm)->allocate_kv_cache(64).ok());
    int32_t next_block = 0;
    for (size_t p = 0; p < record.at("prompts").size(); ++p) {
      const std::vector<int32_t> ids = record["prompts"][p].at("ids").get<std::vector<int32_t>>();
      const std::vector<float> expected = record["kernel"][p].at("prefill_logits").get<std::vector<float>>();
      const std::vector<int32_t> greedy = record["kernel"][p].at("greedy_ids").get<std::vector<int32_t>>();
      SequenceChunk chunk{0, static_cast<int32_t>(ids.size()), {}, true};
      for (int32_t b = 0; b < 4; ++b) chunk.block_table.push_back(next_block++);
      std::vector<float> logits;
      ASSERT_TRUE((*lm)->forward(ForwardBatch{ids, {chunk}}, logits).ok());
      expect_close(std::string(model) + " prompt " + std::to_string(p) + " prefill logits", logits, expected,
                   2 * kBf16Tolerance);
      ASSERT_FALSE(greedy.empty());
      const size_t top = std::max_element(logits.begin(), logits.end()) - logits.begin();
      EXPECT_GE(expected[top], expected[static_cast<size_t>(greedy[0])] - 0.05f) << "greedy token " << top;
    }
  }
}

// ---- sampling candidates (top_candidates): exact agreement with the CPU reference

struct CandidateCase {
  std::string name;
  int64_t rows = 0, vocab = 0;
  std::vector<float> logits;
  std::vector<int32_t> starts = {0}, ids;  // listed ids of row r: ids[starts[r] .. starts[r + 1])
  // Structured output: empty, or the mask of each row (-1 none) and the masks, ceil(vocab / 32) words each.
  std::vector<int32_t> mask_rows;
  std::vector<uint32_t> masks;
};

struct CandidateResult {
  std::vector<int32_t> ids;
  std::vector<float> logits, listed, lse, tempered;
};

CandidateResult run_candidates(Backend& backend, const CandidateCase& c, int32_t k) {
  On on(backend);
  const int64_t num_listed = static_cast<int64_t>(c.ids.size());
  // No listed ids: empty views without a buffer, as DecoderLM passes them.
  const Tensor ids = num_listed > 0 ? on.put(c.ids, DType::kI32, 1, num_listed) : Tensor{};
  const Tensor listed = num_listed > 0 ? on.empty(DType::kF32, 1, num_listed) : Tensor{};
  const Tensor cand_ids = on.empty(DType::kI32, c.rows, k);
  const Tensor cand_logits = on.empty(DType::kF32, c.rows, k);
  const Tensor lse = on.empty(DType::kF32, 1, c.rows);
  std::vector<float> inverse_t(static_cast<size_t>(c.rows));
  for (size_t r = 0; r < inverse_t.size(); ++r) inverse_t[r] = r % 2 ? 1.0f / 0.6f : 1.0f;  // R1's 0.6, and none
  const Tensor tempered = on.empty(DType::kF32, 1, c.rows);
  const int64_t words = (c.vocab + 31) / 32;
  const bool masked = !c.mask_rows.empty();
  const Tensor mask_rows = masked ? on.put(c.mask_rows, DType::kI32, 1, c.rows) : Tensor{};
  const Tensor masks =
      masked ? on.put(c.masks, DType::kU32, static_cast<int64_t>(c.masks.size()) / words, words) : Tensor{};
  on->top_candidates(on.put(c.logits, DType::kF32, c.rows, c.vocab), on.put(c.starts, DType::kI32, 1, c.rows + 1), ids,
                     k, listed, cand_ids, cand_logits, lse, on.put(inverse_t, DType::kF32, 1, c.rows), tempered,
                     mask_rows, masks);
  CandidateResult result;
  result.ids.resize(static_cast<size_t>(c.rows * k));
  backend.copy_to_host(cand_ids, std::as_writable_bytes(std::span(result.ids)));
  result.logits = on.get(cand_logits);
  result.lse = on.get(lse);
  result.tempered = on.get(tempered);
  if (num_listed > 0) result.listed = on.get(listed);
  return result;
}

uint32_t float_bits(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return bits;
}

// Candidates and listed logits bit for bit; the log-sum-exp within 1e-5 relative (infinities equal).
CandidateResult expect_same_candidates(Backend* gpu, Backend* cpu, const CandidateCase& c, int32_t k) {
  const CandidateResult g = run_candidates(*gpu, c, k);
  const CandidateResult h = run_candidates(*cpu, c, k);
  const std::string what = c.name + " k=" + std::to_string(k);
  int mismatches = 0;
  for (int64_t r = 0; r < c.rows; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      const size_t at = static_cast<size_t>(r * k + i);
      if (g.ids[at] == h.ids[at] && float_bits(g.logits[at]) == float_bits(h.logits[at])) continue;
      if (++mismatches <= 10) {
        ADD_FAILURE() << what << " row " << r << " slot " << i << ": gpu id " << g.ids[at] << " logit " << g.logits[at]
                      << ", cpu id " << h.ids[at] << " logit " << h.logits[at];
      }
    }
  }
  EXPECT_EQ(mismatches, 0) << what << ": candidate slots that differ";
  EXPECT_EQ(g.listed.size(), h.listed.size());
  for (size_t j = 0; j < g.listed.size() && j < h.listed.size(); ++j) {
    EXPECT_EQ(float_bits(g.listed[j]), float_bits(h.listed[j])) << what << " listed logit " << j;
  }
  double worst = 0;
  for (const auto& [gv, hv] : {std::pair(&g.lse, &h.lse), std::pair(&g.tempered, &h.tempered)}) {
    for (int64_t r = 0; r < c.rows; ++r) {
      const float a = (*gv)[static_cast<size_t>(r)], b = (*hv)[static_cast<size_t>(r)];
      if (!std::isfinite(b)) {
        EXPECT_EQ(a, b) << what << " log_sum_exp (or tempered) row " << r;
        continue;
      }
      const double error = std::abs(double{a} - double{b}) / std::max(1.0, std::abs(double{b}));
      worst = std::max(worst, std::isnan(error) ? INFINITY : error);
    }
  }
  std::fprintf(stderr, "  %-60s log_sum_exp relative error %.3e (tolerance 1e-05)\n", what.c_str(), worst);
  ::testing::Test::RecordProperty("top_candidates " + what, std::to_string(worst));
  EXPECT_LE(worst, 1e-5) << what << " log_sum_exp";
  return g;
}

// Lists `count` distinct random ids of [0, vocab) for the next row (after any already in `forced`).
void list_ids(CandidateCase& c, std::mt19937& rng, int64_t count, const std::vector<int32_t>& forced = {}) {
  std::vector<char> seen(static_cast<size_t>(c.vocab), 0);
  std::vector<int32_t> row;
  for (int32_t id : forced) {
    if (!seen[static_cast<size_t>(id)]) row.push_back(id);
    seen[static_cast<size_t>(id)] = 1;
  }
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(c.vocab - 1));
  count = std::min(count, c.vocab);
  while (static_cast<int64_t>(row.size()) < count) {
    const int32_t id = pick(rng);
    if (!seen[static_cast<size_t>(id)]) row.push_back(id);
    seen[static_cast<size_t>(id)] = 1;
  }
  std::shuffle(row.begin(), row.end(), rng);
  c.ids.insert(c.ids.end(), row.begin(), row.end());
  c.starts.push_back(static_cast<int32_t>(c.ids.size()));
}

// Row r of a case gets one of these shapes of logits (r % 8), over normal-ish random values.
void shape_row(float* row, int64_t vocab, int64_t r, std::mt19937& rng) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  switch (r % 8) {
    case 1:  // many exact ties; small negatives round to -0.0, which ties with +0.0
      for (int64_t i = 0; i < vocab; ++i) row[i] = std::round(row[i] * 2.0f) / 2.0f;
      break;
    case 2:  // unlisted -inf entries here and there
      for (int64_t i = 0; i < vocab; i += 1 + pick(rng) % 10) row[i] = -kInf;
      break;
    case 3:  // a few distinct values: the k-th candidate sits in a huge group of exact ties
      for (int64_t i = 0; i < vocab; ++i) row[i] = std::round(row[i] / 3.0f);
      break;
    case 4: {  // -inf but for a few values: the -inf ties fill the candidates by id
      std::vector<float> keep(30);
      std::vector<int64_t> where(30);
      for (size_t j = 0; j < keep.size(); ++j) {
        where[j] = pick(rng);
        keep[j] = row[where[j]];
      }
      std::fill(row, row + vocab, -kInf);
      for (size_t j = 0; j < keep.size(); ++j) row[where[j]] = keep[j];
      break;
    }
    case 5:  // all -inf
      std::fill(row, row + vocab, -kInf);
      break;
    case 6:  // all zero, mixed signs
      for (int64_t i = 0; i < vocab; ++i) row[i] = i % 3 == 0 ? -0.0f : 0.0f;
      break;
    default:  // 0 and 7: the random values as they are
      break;
  }
}

// The ids of the n largest values of a row (ties to the lower id).
std::vector<int32_t> top_ids(const float* row, int64_t vocab, size_t n) {
  std::vector<int32_t> ids(static_cast<size_t>(vocab));
  std::iota(ids.begin(), ids.end(), 0);
  n = std::min(n, ids.size());
  std::partial_sort(ids.begin(), ids.begin() + static_cast<int64_t>(n), ids.end(),
                    [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
  ids.resize(n);
  return ids;
}

CandidateCase make_candidate_case(const std::string& name, int64_t rows, int64_t vocab, uint32_t seed,
                                  const std::vector<int64_t>& listed_counts) {
  std::mt19937 rng(seed);
  CandidateCase c{name, rows, vocab, random_floats(rng, size_t(rows * vocab), 3.0f)};
  for (int64_t r = 0; r < rows; ++r) {
    float* row = c.logits.data() + r * vocab;
    shape_row(row, vocab, r, rng);
    const int64_t count = listed_counts[static_cast<size_t>(r) % listed_counts.size()];
    std::vector<int32_t> forced;
    if (count > 0 && r % 8 == 7) forced = top_ids(row, vocab, std::min<int64_t>(30, count));  // the best are listed
    if (count > 0 && r % 8 == 6) {  // the lowest ids of an all-tie row are listed
      for (int32_t id = 0; id < std::min<int64_t>(10, count); ++id) forced.push_back(id);
    }
    list_ids(c, rng, count, forced);
  }
  return c;
}

// Qwen2.5's vocabulary, 256 rows (a full decode batch): every row shape (r % 8) with none, a few and a few
// thousand listed ids (r % 3), so every combination occurs.
TEST_F(CudaBackendTest, TopCandidatesQwenVocabulary) {
  const CandidateCase c = make_candidate_case("top_candidates 256x151936", 256, kQwen05.vocab, 20, {0, 7, 3000});
  for (int32_t k : {1, 20, 64}) expect_same_candidates(gpu_, cpu_, c, k);
}

// Small rows: aligned (1000) and unaligned (1003: float4 loads on some rows, scalar on others, a scalar tail)
// row lengths, 0 / a few / 900 of 1000 ids listed.
TEST_F(CudaBackendTest, TopCandidatesSmallRows) {
  for (int64_t vocab : {1000, 1003}) {
    const CandidateCase c = make_candidate_case("top_candidates 3x" + std::to_string(vocab), 3, vocab, 21, {0, 5, 900});
    for (int32_t k : {1, 20, 64}) expect_same_candidates(gpu_, cpu_, c, k);
  }
  // No listed ids at all: listed_ids and listed_logits are empty views.
  const CandidateCase none = make_candidate_case("top_candidates 8x1000 none listed", 8, 1000, 22, {0});
  for (int32_t k : {1, 20, 64}) expect_same_candidates(gpu_, cpu_, none, k);
}

// Fewer than k unlisted ids: vocab 70 with 10 listed leaves 60 real candidates and 4 padding slots at k = 64;
// a row with every id listed is all padding.
TEST_F(CudaBackendTest, TopCandidatesPadsWhenFewIdsAreUnlisted) {
  CandidateCase c = make_candidate_case("top_candidates 5x70", 5, 70, 23, {10});
  c.ids.resize(static_cast<size_t>(c.starts[3]));
  c.starts.resize(4);
  std::mt19937 rng(24);
  list_ids(c, rng, 70);  // row 3: everything listed
  list_ids(c, rng, 10);
  for (int32_t k : {1, 20, 64}) {
    const CandidateResult g = expect_same_candidates(gpu_, cpu_, c, k);
    if (k != 64 || g.ids.size() != size_t{5} * 64) continue;
    for (int64_t r = 0; r < 5; ++r) {
      const int64_t real = r == 3 ? 0 : 60;
      for (int64_t i = 0; i < 64; ++i) {
        const size_t at = static_cast<size_t>(r * 64 + i);
        if (i < real) {
          EXPECT_GE(g.ids[at], 0) << "row " << r << " slot " << i;
        } else {
          EXPECT_EQ(g.ids[at], -1) << "row " << r << " slot " << i;
          EXPECT_EQ(g.logits[at], -std::numeric_limits<float>::infinity()) << "row " << r << " slot " << i;
        }
      }
    }
  }
}

// Structured output's masks on Qwen2.5-0.5B's 151936 logits (a multiple of 32) and on 1003 (not, with unaligned
// rows): rows without a mask, a mask allowing one token (listed on some rows: no candidate at all), random halves,
// masks forbidding the listed ids, a mask shared by two rows. The CPU reference is what the engine's tests check
// against whole-row sampling.
TEST_F(CudaBackendTest, TopCandidatesApplyStructuredOutputMasks) {
  for (int64_t vocab : {int64_t{kQwen05.vocab}, int64_t{1003}}) {
    CandidateCase c =
        make_candidate_case("top_candidates masked 48x" + std::to_string(vocab), 48, vocab, 25, {0, 7, 300});
    const int64_t words = (vocab + 31) / 32;
    std::mt19937 rng(26);
    c.mask_rows.assign(static_cast<size_t>(c.rows), -1);
    for (int64_t r = 0; r < c.rows; ++r) {
      const int kind = static_cast<int>(r % 5);
      if (kind == 0) continue;
      if (kind == 4) {  // shares the previous row's mask
        c.mask_rows[static_cast<size_t>(r)] = c.mask_rows[static_cast<size_t>(r - 1)];
        continue;
      }
      const int32_t m = static_cast<int32_t>(c.masks.size() / static_cast<size_t>(words));
      c.masks.resize(c.masks.size() + static_cast<size_t>(words), 0);
      uint32_t* w = c.masks.data() + static_cast<size_t>(m) * static_cast<size_t>(words);
      auto set = [&](int64_t id, bool on) {
        w[id / 32] = on ? w[id / 32] | (uint32_t{1} << (id % 32)) : w[id / 32] & ~(uint32_t{1} << (id % 32));
      };
      const bool listed = c.starts[static_cast<size_t>(r) + 1] > c.starts[static_cast<size_t>(r)];
      if (kind == 1) {
        set(r % 2 && listed ? c.ids[static_cast<size_t>(c.starts[static_cast<size_t>(r)])] : (r * 7919) % vocab, true);
      } else {
        for (int64_t id = 0; id < vocab; ++id) set(id, rng() % 2 == 0);
        if (kind == 3)
          for (int32_t j = c.starts[static_cast<size_t>(r)]; j < c.starts[static_cast<size_t>(r) + 1]; ++j)
            set(c.ids[static_cast<size_t>(j)], false);
      }
      c.mask_rows[static_cast<size_t>(r)] = m;
    }
    for (int32_t k : {1, 20, 64}) expect_same_candidates(gpu_, cpu_, c, k);
  }
}

// ---- device faults

// A device fault (here an illegal address: a block id far outside the cache) must not abort the process: the
// backend records it, skips what follows, and reports it from device_status(). A faulted CUDA context is dead
// for the whole process, so this runs in a child process of its own (a "threadsafe" death test re-executes the
// binary with only this test, on a fresh context) that exits 0 when everything behaved.
using CudaBackendDeathTest = CudaBackendTest;

[[noreturn]] void fault_child_fails(const std::string& why) {
  std::fprintf(stderr, "fault test failed: %s\n", why.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

void fault_and_survive(Backend*& gpu) {
  if (!gpu->device_status().ok()) fault_child_fails("device_status() not OK before any fault");
  const int32_t heads = 4, kv_heads = 2, head_dim = 64;
  std::vector<float> outputs;
  absl::Status status;
  {
    On on(*gpu);
    KvCacheLayer cache{on.empty(DType::kF32, kKvBlockSize, kv_heads * head_dim),
                       on.empty(DType::kF32, kKvBlockSize, kv_heads * head_dim)};
    const std::vector<float> q(heads * head_dim, 1.0f);
    AttentionMetadata metadata{1,
                               on.put(std::vector<int32_t>{0, 1}, DType::kI32, 1, 2),
                               on.put(std::vector<int32_t>{1}, DType::kI32, 1, 1),
                               on.put(std::vector<int32_t>{0x3fffffff}, DType::kI32, 1, 1),  // 8 TB past the cache
                               1,
                               1};
    Tensor out = on.empty(DType::kF32, 1, heads * head_dim);
    on->paged_attention(on.put(q, DType::kF32, 1, heads * head_dim), cache, metadata,
                        AttentionShape{heads, kv_heads, head_dim, 0.125f}, out);
    outputs = on.get(out);  // the fault surfaces here at the latest
    status = gpu->device_status();
    if (status.ok()) fault_child_fails("an out-of-range block id did not fault");
    if (status.code() != absl::StatusCode::kInternal) fault_child_fails("not an InternalError: " + status.ToString());
    for (float v : outputs) {
      if (v != 0.0f) fault_child_fails("copy_to_host after the fault did not fill zeros");
    }
    // Everything after the fault is skipped without aborting; the status stays the first fault.
    on->add(out, out, out);
    gpu->synchronize();
    if (on.get(out) != std::vector<float>(outputs.size(), 0.0f)) fault_child_fails("second copy not zeros");
    if (gpu->device_status().ToString() != status.ToString()) fault_child_fails("the status is not sticky");
    if (gpu->allocate(1024).ok()) fault_child_fails("allocate() succeeded on a faulted device");
    (void)gpu->memory_info();
  }  // the buffers are freed on the dead context: must not abort either
  delete gpu;
  gpu = nullptr;
  std::fprintf(stderr, "device fault reported: %s\n", status.ToString().c_str());
  std::fflush(stderr);
  std::_Exit(0);
}

TEST_F(CudaBackendDeathTest, DeviceFaultIsReportedNotFatal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(fault_and_survive(gpu_), ::testing::ExitedWithCode(0), "device fault reported: INTERNAL: CUDA error");
}

}  // namespace
}  // namespace bm::engine
