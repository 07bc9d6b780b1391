// The CPU backend's encoder ops (rope_table, segment_attention, gelu: what the vision tower adds to the decoder's
// ops) against double-precision loops, at odd shapes: head_dim not a power of two, heads grouped over fewer KV
// heads, an empty and a one-row segment.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <span>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/cpu/cpu_backend.h"

namespace bm::engine {
namespace {

class EncoderOpsTest : public ::testing::Test {
 protected:
  Tensor upload(const std::vector<float>& values, int64_t rows, int64_t cols) {
    return upload_bytes(std::as_bytes(std::span(values)), DType::kF32, rows, cols);
  }
  Tensor upload_ints(const std::vector<int32_t>& values) {
    return upload_bytes(std::as_bytes(std::span(values)), DType::kI32, 1, static_cast<int64_t>(values.size()));
  }
  Tensor empty(int64_t rows, int64_t cols) { return upload(std::vector<float>(rows * cols, 0.0f), rows, cols); }
  std::vector<float> download(const Tensor& tensor) {
    std::vector<float> out(static_cast<size_t>(tensor.num_elements()));
    backend_->copy_to_host(tensor, std::as_writable_bytes(std::span(out)));
    return out;
  }
  std::vector<float> random(size_t count) {
    std::normal_distribution<float> normal;
    std::vector<float> out(count);
    for (float& x : out) x = normal(rng_);
    return out;
  }

  std::unique_ptr<Backend> backend_ = create_cpu_backend(CpuBackendOptions{});
  std::mt19937 rng_{7};

 private:
  Tensor upload_bytes(std::span<const std::byte> bytes, DType dtype, int64_t rows, int64_t cols) {
    auto buffer = backend_->allocate(static_cast<int64_t>(bytes.size()));
    BM_CHECK(buffer.ok());
    const Tensor tensor{buffer->get(), 0, dtype, rows, cols};
    backend_->copy_to_device(bytes, tensor);
    buffers_.push_back(std::move(*buffer));
    return tensor;
  }
  std::vector<std::unique_ptr<Buffer>> buffers_;
};

TEST_F(EncoderOpsTest, RopeTableMatchesAReference) {
  const int64_t n = 7, heads = 3, head_dim = 10, half = head_dim / 2;
  const std::vector<float> x = random(n * heads * head_dim);
  std::vector<float> angles = random(n * half);
  std::vector<float> cos(angles.size()), sin(angles.size());
  for (size_t i = 0; i < angles.size(); ++i) cos[i] = std::cos(angles[i]), sin[i] = std::sin(angles[i]);
  const Tensor xt = upload(x, n, heads * head_dim);
  backend_->rope_table(xt, upload(cos, n, half), upload(sin, n, half), head_dim);
  const std::vector<float> got = download(xt);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < head_dim; ++i) {
        const int64_t base = (t * heads + h) * head_dim;
        const int64_t j = i % half;
        const double c = cos[t * half + j], s = sin[t * half + j];
        const double rotated = i < half ? -double{x[base + i + half]} : double{x[base + i - half]};
        EXPECT_NEAR(got[base + i], x[base + i] * c + rotated * s, 1e-6);
      }
    }
  }
}

TEST_F(EncoderOpsTest, SegmentAttentionMatchesAReference) {
  const int32_t n = 13, heads = 4, kv_heads = 2, head_dim = 5;
  const std::vector<int32_t> starts = {0, 5, 5, 12, 13};  // an empty segment and a one-row segment
  const std::vector<float> q = random(n * heads * head_dim), k = random(n * kv_heads * head_dim),
                           v = random(n * kv_heads * head_dim);
  const float scale = 0.37f;
  const Tensor out = empty(n, heads * head_dim);
  backend_->segment_attention(upload(q, n, heads * head_dim), upload(k, n, kv_heads * head_dim),
                              upload(v, n, kv_heads * head_dim), upload_ints(starts),
                              AttentionShape{heads, kv_heads, head_dim, scale}, out);
  const std::vector<float> got = download(out);
  for (size_t s = 0; s + 1 < starts.size(); ++s) {
    for (int32_t r = starts[s]; r < starts[s + 1]; ++r) {
      for (int32_t h = 0; h < heads; ++h) {
        const int32_t g = h / (heads / kv_heads);
        std::vector<double> weights;
        double max_score = -1e300, total = 0;
        for (int32_t j = starts[s]; j < starts[s + 1]; ++j) {
          double dot = 0;
          for (int32_t d = 0; d < head_dim; ++d)
            dot += double{q[(r * heads + h) * head_dim + d]} * k[(j * kv_heads + g) * head_dim + d];
          weights.push_back(dot * scale);
          max_score = std::max(max_score, weights.back());
        }
        for (double& w : weights) total += (w = std::exp(w - max_score));
        for (int32_t d = 0; d < head_dim; ++d) {
          double want = 0;
          for (int32_t j = starts[s]; j < starts[s + 1]; ++j)
            want += weights[static_cast<size_t>(j - starts[s])] / total * v[(j * kv_heads + g) * head_dim + d];
          EXPECT_NEAR(got[(r * heads + h) * head_dim + d], want, 2e-6) << r << " " << h << " " << d;
        }
      }
    }
  }
}

TEST_F(EncoderOpsTest, GeluIsTheExactErfForm) {
  std::vector<float> x = random(3 * 11);
  x[0] = 0.0f, x[1] = -8.0f, x[2] = 8.0f, x[3] = 1e-8f;
  const Tensor xt = upload(x, 3, 11);
  const Tensor out = empty(3, 11);
  backend_->gelu(xt, out);
  const std::vector<float> got = download(out);
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = 0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0)));
    EXPECT_NEAR(got[i], want, 1e-6 * std::max(1.0, std::abs(want))) << x[i];
  }
}

// A backend without the encoder ops (as the CUDA plugin was before it ran them): only its name is ever asked for here.
class NoEncoderBackend final : public Backend {
 public:
  std::string_view name() const override { return "test"; }
  MemoryInfo memory_info() const override { return {}; }
  absl::StatusOr<std::unique_ptr<Buffer>> allocate(int64_t) override { return absl::UnimplementedError("test"); }
  void copy_to_device(std::span<const std::byte>, const Tensor&) override { BM_CHECK(false); }
  void copy_to_host(const Tensor&, std::span<std::byte>) override { BM_CHECK(false); }
  void synchronize() override {}
  void replay(const StepGraph&) override { BM_CHECK(false); }
  void embedding(const Tensor&, const Tensor&, const Tensor&) override { BM_CHECK(false); }
  void rms_norm(const Tensor&, const Tensor&, float, const Tensor&) override { BM_CHECK(false); }
  void add_rms_norm(const Tensor&, const Tensor&, const Tensor&, float, const Tensor&) override { BM_CHECK(false); }
  void linear(const Tensor&, const Tensor&, const Tensor*, const Tensor&) override { BM_CHECK(false); }
  void rope(const Tensor&, const Tensor&, const Tensor&, int32_t) override { BM_CHECK(false); }
  void store_kv(const Tensor&, const Tensor&, const Tensor&, const KvCacheLayer&) override { BM_CHECK(false); }
  void paged_attention(const Tensor&, const KvCacheLayer&, const AttentionMetadata&, const AttentionShape&,
                       const Tensor&) override {
    BM_CHECK(false);
  }
  void rope_store_kv(const Tensor&, const RotaryAngles&, const AttentionShape&, const Tensor&, const KvCacheLayer&,
                     const Tensor&) override {
    BM_CHECK(false);
  }
  void silu_mul(const Tensor&, const Tensor&, const Tensor&) override { BM_CHECK(false); }
  void silu_mul_fused(const Tensor&, const Tensor&) override { BM_CHECK(false); }
  void add(const Tensor&, const Tensor&, const Tensor&) override { BM_CHECK(false); }
  void gather_rows(const Tensor&, const Tensor&, const Tensor&) override { BM_CHECK(false); }
  void top_candidates(const Tensor&, const Tensor&, const Tensor&, int32_t, const Tensor&, const Tensor&, const Tensor&,
                      const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) override {
    BM_CHECK(false);
  }
};

TEST(EncoderOpsDeathTest, ABackendWithoutThemSaysWhichOpAndBackend) {
  NoEncoderBackend backend;
  EXPECT_FALSE(backend.runs_encoder_ops());
  const Tensor none;
  EXPECT_DEATH(backend.rope_table(none, none, none, 2), "rope_table is not implemented on the test backend yet");
  EXPECT_DEATH(backend.segment_attention(none, none, none, none, AttentionShape{}, none),
               "segment_attention is not implemented on the test backend yet");
  EXPECT_DEATH(backend.gelu(none, none), "gelu is not implemented on the test backend yet");
}

}  // namespace
}  // namespace bm::engine
