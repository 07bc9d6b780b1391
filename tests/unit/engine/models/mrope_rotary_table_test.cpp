// Qwen2.5-VL's M-RoPE table (mrope_rotary_table) through the CPU backend's rope_table op, against a
// double-precision transcription of transformers' rotation (Qwen2_5_VLRotaryEmbedding: freqs = position ·
// inv_freq in float32 per row, split by mrope_section, chunk c from row c % 3, concatenated twice; then
// q · cos + rotate_half(q) · sin), at odd shapes; and with three equal rows (text tokens) against the 1-D rope op,
// bit for bit.
#include "engine/models/mrope_rotary_table.h"

#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <memory>
#include <random>
#include <span>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/model/model_config.h"
#include "engine/models/mrope_positions.h"
#include "engine/models/rope_frequencies.h"

namespace bm::engine {
namespace {

class MropeRotaryTableTest : public ::testing::Test {
 protected:
  template <typename T>
  Tensor upload(const std::vector<T>& values, DType dtype, int64_t rows, int64_t cols) {
    auto buffer = backend_->allocate(static_cast<int64_t>(values.size() * sizeof(T)));
    BM_CHECK(buffer.ok());
    const Tensor tensor{buffer->get(), 0, dtype, rows, cols};
    backend_->copy_to_device(std::as_bytes(std::span(values)), tensor);
    buffers_.push_back(std::move(*buffer));
    return tensor;
  }
  std::vector<float> download(const Tensor& tensor) {
    std::vector<float> out(static_cast<size_t>(tensor.num_elements()));
    backend_->copy_to_host(tensor, std::as_writable_bytes(std::span(out)));
    return out;
  }
  // x rotated in place by rope_table with the M-RoPE table of these rows.
  std::vector<float> rotate(const std::vector<float>& x, int64_t head_dim, const std::vector<float>& inv_freq,
                            const std::vector<int32_t>& section, const std::vector<int64_t> (&rows)[3]) {
    const RotaryTable table = mrope_rotary_table(inv_freq, section, {rows[0], rows[1], rows[2]});
    const int64_t n = static_cast<int64_t>(rows[0].size());
    const Tensor xt = upload(x, DType::kF32, n, static_cast<int64_t>(x.size()) / n);
    backend_->rope_table(xt, upload(table.cos, DType::kF32, n, table.half),
                         upload(table.sin, DType::kF32, n, table.half), static_cast<int32_t>(head_dim));
    return download(xt);
  }

  std::unique_ptr<Backend> backend_ = create_cpu_backend(CpuBackendOptions{});
  std::mt19937 rng_{11};

 private:
  std::vector<std::unique_ptr<Buffer>> buffers_;
};

std::vector<float> default_inv_freq(double theta, int32_t head_dim) {
  RopeConfig rope;
  rope.theta = theta;
  absl::StatusOr<std::vector<float>> inv_freq = rope_inverse_frequencies(rope, head_dim, 4096);
  BM_CHECK(inv_freq.ok());
  return *inv_freq;
}

// transformers' rotation of one head, written as it reads: the per-row float32 frequencies, the split and
// recomposition, cat(freq, freq), rotate_half; the cos/sin and the rotation in double.
std::vector<double> reference_head(std::span<const float> q, const std::vector<float>& inv_freq,
                                   const std::vector<int32_t>& section, const int64_t (&position)[3]) {
  const size_t half = inv_freq.size(), head_dim = 2 * half;
  std::vector<double> freq;
  size_t start = 0;
  for (size_t chunk = 0; chunk < section.size(); ++chunk) {
    for (size_t i = start; i < start + static_cast<size_t>(section[chunk]); ++i) {
      freq.push_back(static_cast<float>(position[chunk % 3]) * inv_freq[i]);  // float32, as torch
    }
    start += static_cast<size_t>(section[chunk]);
  }
  std::vector<double> emb(freq);
  emb.insert(emb.end(), freq.begin(), freq.end());
  std::vector<double> rotated(head_dim), out(head_dim);
  for (size_t i = 0; i < half; ++i) rotated[i] = -double{q[i + half]}, rotated[i + half] = q[i];
  for (size_t i = 0; i < head_dim; ++i) out[i] = q[i] * std::cos(emb[i]) + rotated[i] * std::sin(emb[i]);
  return out;
}

TEST_F(MropeRotaryTableTest, MatchesTransformersRotationInDouble) {
  // head_dim 20 (10 frequencies) in three heads, seven tokens; rows that differ, as an image's do, a video's
  // temporal row stepping by 4, and one large position.
  const int64_t n = 7, heads = 3, head_dim = 20;
  const std::vector<float> inv_freq = default_inv_freq(10000.0, head_dim);
  const std::vector<int64_t> rows[3] = {
      {0, 1, 5, 5, 9, 13, 40001}, {0, 1, 2, 3, 3, 4, 40002}, {0, 1, 2, 4, 6, 5, 40000}};
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(n * heads * head_dim));
  for (float& v : x) v = normal(rng_);
  for (const std::vector<int32_t>& section : {std::vector<int32_t>{2, 4, 4}, std::vector<int32_t>{3, 3, 4}}) {
    SCOPED_TRACE(::testing::Message() << "mrope_section " << section[0] << "," << section[1] << "," << section[2]);
    const std::vector<float> got = rotate(x, head_dim, inv_freq, section, rows);
    double worst = 0;
    for (int64_t t = 0; t < n; ++t) {
      const int64_t position[3] = {rows[0][t], rows[1][t], rows[2][t]};
      for (int64_t h = 0; h < heads; ++h) {
        const size_t base = static_cast<size_t>((t * heads + h) * head_dim);
        const std::vector<double> expected =
            reference_head(std::span(x).subspan(base, head_dim), inv_freq, section, position);
        for (int64_t i = 0; i < head_dim; ++i) worst = std::max(worst, std::abs(got[base + i] - expected[i]));
      }
    }
    // float32 cos/sin and products of values of magnitude ~3: a few float ulps.
    EXPECT_LT(worst, 2e-6);
    std::cout << "[ max |rope_table(M-RoPE) - double reference| ] " << worst << "\n";
  }
}

// Text tokens have three equal rows; the table is then the 1-D RoPE's and rotates exactly as the rope op.
TEST_F(MropeRotaryTableTest, EqualRowsAreThe1DRopeBitForBit) {
  const int64_t heads = 2, head_dim = 128;
  const std::vector<float> inv_freq = default_inv_freq(1000000.0, head_dim);
  const std::vector<int32_t> section = {16, 24, 24};
  // The positions get_rope_index gives a text prompt (0..n-1 on all rows), then far-away ones.
  const std::vector<int32_t> ids = {5, 9, 2, 7, 7, 1, 3, 8, 4, 6, 11};
  absl::StatusOr<MropePositions> positions = mrope_positions(ids, MropeInputs{});
  ASSERT_TRUE(positions.ok()) << positions.status();
  std::vector<int64_t> rows[3];
  for (int r = 0; r < 3; ++r) {
    rows[r] = positions->rows[r];
    rows[r].insert(rows[r].end(), {1000, 32767, 131071});
  }
  const int64_t n = static_cast<int64_t>(rows[0].size());
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(n * heads * head_dim));
  for (float& v : x) v = normal(rng_);
  const std::vector<float> got = rotate(x, head_dim, inv_freq, section, rows);

  const std::vector<int32_t> flat(rows[0].begin(), rows[0].end());
  const Tensor xt = upload(x, DType::kF32, n, heads * head_dim);
  backend_->rope(xt, upload(flat, DType::kI32, 1, n), upload(inv_freq, DType::kF32, 1, head_dim / 2), head_dim);
  EXPECT_EQ(got, download(xt));
}

}  // namespace
}  // namespace bm::engine
