// Each CPU op against a plain loop written from the op's definition (in double precision), on random inputs.
// Agreement is measured as the normalised squared error sum((a-b)^2) / sum(b^2): float32 rounding puts it near
// 1e-14, a wrong index or a missed term near 1e-2 or above, so 1e-10 separates the two with room on both sides.
#include "engine/backend/cpu/cpu_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "engine/backend/cpu/bf16.h"
#include "tests/unit/engine/backend/normalised_error.h"

namespace bm::engine {
namespace {

using kernel_check::kMaxNormalisedError;
using kernel_check::normalised_error;

std::vector<float> random_floats(std::mt19937& rng, size_t count, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> values(count);
  for (float& v : values) v = normal(rng);
  return values;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& values) {
  std::vector<uint16_t> bits(values.size());
  std::transform(values.begin(), values.end(), bits.begin(), cpu::f32_to_bf16);
  return bits;
}

std::vector<float> round_to_bf16(const std::vector<float>& values) {
  std::vector<float> rounded(values.size());
  std::transform(values.begin(), values.end(), rounded.begin(),
                 [](float v) { return cpu::bf16_to_f32(cpu::f32_to_bf16(v)); });
  return rounded;
}

// Owns the buffers a test makes.
class CpuBackendTest : public ::testing::TestWithParam<int32_t> {
 protected:
  void SetUp() override { backend_ = create_cpu_backend(CpuBackendOptions{GetParam()}); }

  template <typename T>
  Tensor upload(const std::vector<T>& values, DType dtype, int64_t rows, int64_t cols) {
    EXPECT_EQ(static_cast<int64_t>(values.size()), rows * cols);
    Tensor tensor = empty(dtype, rows, cols);
    backend_->copy_to_device(std::as_bytes(std::span(values)), tensor);
    return tensor;
  }

  Tensor empty(DType dtype, int64_t rows, int64_t cols) {
    absl::StatusOr<std::unique_ptr<Buffer>> buffer = backend_->allocate(rows * cols * dtype_size(dtype));
    EXPECT_TRUE(buffer.ok());
    buffers_.push_back(std::move(*buffer));
    return Tensor{buffers_.back().get(), 0, dtype, rows, cols};
  }

  std::vector<float> download(const Tensor& tensor) {
    std::vector<float> values(static_cast<size_t>(tensor.num_elements()));
    backend_->copy_to_host(tensor, std::as_writable_bytes(std::span(values)));
    return values;
  }

  std::mt19937 rng_{1234};
  std::unique_ptr<Backend> backend_;
  std::vector<std::unique_ptr<Buffer>> buffers_;
};

std::vector<double> reference_linear(const std::vector<float>& x, const std::vector<float>& w,
                                     const std::vector<float>* bias, int64_t n, int64_t k, int64_t m) {
  std::vector<double> out(static_cast<size_t>(n * m));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < m; ++j) {
      double sum = bias != nullptr ? (*bias)[j] : 0.0;
      for (int64_t c = 0; c < k; ++c) sum += double{x[i * k + c]} * w[j * k + c];
      out[i * m + j] = sum;
    }
  }
  return out;
}

TEST_P(CpuBackendTest, LinearMatchesTheLoopForBf16AndF32Weights) {
  for (const auto& [n, k, m] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {1, 64, 16}, {3, 7, 5}, {17, 133, 37}, {1, 896, 130}, {5, 1, 1}, {2, 250, 33}}) {
    SCOPED_TRACE(testing::Message() << "n=" << n << " k=" << k << " m=" << m);
    const std::vector<float> x = random_floats(rng_, n * k);
    const std::vector<float> w = round_to_bf16(random_floats(rng_, m * k, 0.1f));
    const std::vector<float> bias = round_to_bf16(random_floats(rng_, m));
    const Tensor xt = upload(x, DType::kF32, n, k);
    const Tensor w_bf16 = upload(to_bf16(w), DType::kBF16, m, k);
    const Tensor w_f32 = upload(w, DType::kF32, m, k);
    const Tensor b_bf16 = upload(to_bf16(bias), DType::kBF16, 1, m);
    const Tensor out = empty(DType::kF32, n, m);
    backend_->linear(xt, w_bf16, &b_bf16, out);
    EXPECT_LT(normalised_error(download(out), reference_linear(x, w, &bias, n, k, m)), kMaxNormalisedError);
    backend_->linear(xt, w_f32, nullptr, out);
    EXPECT_LT(normalised_error(download(out), reference_linear(x, w, nullptr, n, k, m)), kMaxNormalisedError);
  }
}

// A row's result must not depend on the other rows of the batch (prefill and decode give the same numbers).
TEST_P(CpuBackendTest, LinearRowsDoNotDependOnTheBatch) {
  const int64_t n = 9, k = 203, m = 70;
  const std::vector<float> x = random_floats(rng_, n * k);
  const Tensor w = upload(to_bf16(random_floats(rng_, m * k)), DType::kBF16, m, k);
  const Tensor xt = upload(x, DType::kF32, n, k);
  const Tensor all = empty(DType::kF32, n, m);
  backend_->linear(xt, w, nullptr, all);
  const std::vector<float> batched = download(all);
  for (int64_t i = 0; i < n; ++i) {
    const Tensor one = empty(DType::kF32, 1, m);
    backend_->linear(xt.row_slice(i, 1), w, nullptr, one);
    const std::vector<float> alone = download(one);
    EXPECT_TRUE(std::equal(alone.begin(), alone.end(), batched.begin() + i * m)) << "row " << i;
  }
}

TEST_P(CpuBackendTest, EmbeddingLooksUpRows) {
  const int64_t vocab = 50, hidden = 24;
  const std::vector<float> table = round_to_bf16(random_floats(rng_, vocab * hidden));
  const std::vector<int32_t> ids = {3, 0, 49, 3, 17};
  const Tensor out = empty(DType::kF32, 5, hidden);
  backend_->embedding(upload(to_bf16(table), DType::kBF16, vocab, hidden), upload(ids, DType::kI32, 1, 5), out);
  std::vector<double> expected;
  for (int32_t id : ids)
    expected.insert(expected.end(), table.begin() + id * hidden, table.begin() + (id + 1) * hidden);
  EXPECT_EQ(normalised_error(download(out), expected), 0.0);
}

TEST_P(CpuBackendTest, RmsNormMatchesTheLoop) {
  const int64_t n = 7, d = 91;
  const float eps = 1e-6f;
  const std::vector<float> x = random_floats(rng_, n * d, 3.0f);
  const std::vector<float> w = round_to_bf16(random_floats(rng_, d));
  const Tensor out = empty(DType::kF32, n, d);
  backend_->rms_norm(upload(x, DType::kF32, n, d), upload(to_bf16(w), DType::kBF16, 1, d), eps, out);
  std::vector<double> expected(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i) {
    double squares = 0;
    for (int64_t c = 0; c < d; ++c) squares += double{x[i * d + c]} * x[i * d + c];
    const double scale = 1.0 / std::sqrt(squares / d + eps);
    for (int64_t c = 0; c < d; ++c) expected[i * d + c] = w[c] * x[i * d + c] * scale;
  }
  EXPECT_LT(normalised_error(download(out), expected), kMaxNormalisedError);
}

TEST_P(CpuBackendTest, RopeRotatesHalvesByPositionTimesFrequency) {
  const int64_t n = 6, heads = 3, head_dim = 16;
  const std::vector<float> x = random_floats(rng_, n * heads * head_dim);
  const std::vector<int32_t> positions = {0, 1, 2, 7, 100, 4095};
  std::vector<float> inv_freq(head_dim / 2);
  for (int64_t i = 0; i < head_dim / 2; ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / head_dim);
  const Tensor xt = upload(x, DType::kF32, n, heads * head_dim);
  backend_->rope(xt, upload(positions, DType::kI32, 1, n), upload(inv_freq, DType::kF32, 1, head_dim / 2), head_dim);
  std::vector<double> expected(x.size());
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t base = (t * heads + h) * head_dim;
      for (int64_t i = 0; i < head_dim / 2; ++i) {
        const double angle = double{static_cast<float>(positions[t]) * inv_freq[i]};
        const double x1 = x[base + i], x2 = x[base + i + head_dim / 2];
        expected[base + i] = x1 * std::cos(angle) - x2 * std::sin(angle);
        expected[base + i + head_dim / 2] = x2 * std::cos(angle) + x1 * std::sin(angle);
      }
    }
  }
  EXPECT_LT(normalised_error(download(xt), expected), kMaxNormalisedError);
}

TEST_P(CpuBackendTest, ElementwiseOpsMatchTheirDefinitions) {
  const int64_t n = 5, d = 4099;  // more than one parallel chunk
  const std::vector<float> a = random_floats(rng_, n * d, 4.0f);
  const std::vector<float> b = random_floats(rng_, n * d);
  const Tensor at = upload(a, DType::kF32, n, d);
  const Tensor bt = upload(b, DType::kF32, n, d);
  const Tensor out = empty(DType::kF32, n, d);
  backend_->silu_mul(at, bt, out);
  std::vector<double> expected(a.size());
  for (size_t i = 0; i < a.size(); ++i) expected[i] = a[i] / (1.0 + std::exp(-double{a[i]})) * b[i];
  EXPECT_LT(normalised_error(download(out), expected), kMaxNormalisedError);
  backend_->add(at, bt, at);  // in place, as the residual stream does
  for (size_t i = 0; i < a.size(); ++i) expected[i] = double{a[i]} + b[i];
  EXPECT_LT(normalised_error(download(at), expected), kMaxNormalisedError);
}

TEST_P(CpuBackendTest, GatherRowsPicksRows) {
  const std::vector<float> x = random_floats(rng_, 4 * 10);
  const std::vector<int32_t> rows = {3, 1, 3};
  const Tensor out = empty(DType::kF32, 3, 10);
  backend_->gather_rows(upload(x, DType::kF32, 4, 10), upload(rows, DType::kI32, 1, 3), out);
  std::vector<double> expected;
  for (int32_t r : rows) expected.insert(expected.end(), x.begin() + r * 10, x.begin() + (r + 1) * 10);
  EXPECT_EQ(normalised_error(download(out), expected), 0.0);
}

// Three sequences with scattered blocks: a fresh prefill, a chunk after a cached prefix, and a decode step.
struct AttentionCase {
  int32_t num_heads = 4, num_kv_heads = 2, head_dim = 24;
  std::vector<int32_t> cached = {0, 21, 40};
  std::vector<int32_t> fresh = {19, 6, 1};
};

// Head dims 24, 64 (Qwen2.5-0.5B: 14 heads on 2 KV heads) and 128; prefills of 19, 37 and 33 tokens (tiles of
// 4 query tokens with a tail), chunks after cached prefixes that end mid-block, and single-token decodes.
const AttentionCase kAttentionCases[] = {
    AttentionCase{},
    AttentionCase{14, 2, 64, {0, 21, 40}, {37, 6, 1}},
    AttentionCase{8, 2, 128, {0, 21, 40}, {33, 17, 1}},
};

TEST_P(CpuBackendTest, PagedAttentionMatchesContiguousCausalAttention) {
  for (const AttentionCase& c : kAttentionCases)
    for (DType cache_dtype : {DType::kF32, DType::kBF16}) {
      SCOPED_TRACE(testing::Message() << dtype_name(cache_dtype) << ", head_dim " << c.head_dim);
      const int64_t kv_size = int64_t{c.num_kv_heads} * c.head_dim;
      const int64_t q_size = int64_t{c.num_heads} * c.head_dim;
      const int32_t num_seqs = 3;
      const int32_t num_blocks = 16;
      std::vector<int32_t> free_blocks(num_blocks);
      std::iota(free_blocks.begin(), free_blocks.end(), 0);
      std::shuffle(free_blocks.begin(), free_blocks.end(), rng_);
      // Every position's K/V, per sequence, contiguous (the reference) — written to the cache in two steps.
      std::vector<std::vector<float>> keys(num_seqs), values(num_seqs);
      std::vector<std::vector<int32_t>> tables(num_seqs);
      int32_t max_blocks = 0;
      for (int32_t s = 0; s < num_seqs; ++s) {
        const int32_t length = c.cached[s] + c.fresh[s];
        keys[s] = random_floats(rng_, length * kv_size);
        values[s] = random_floats(rng_, length * kv_size);
        if (cache_dtype == DType::kBF16) {
          keys[s] = round_to_bf16(keys[s]);
          values[s] = round_to_bf16(values[s]);
        }
        const int32_t blocks = (length + kKvBlockSize - 1) / kKvBlockSize;
        for (int32_t b = 0; b < blocks; ++b) {
          tables[s].push_back(free_blocks.back());
          free_blocks.pop_back();
        }
        max_blocks = std::max(max_blocks, blocks);
      }
      const KvCacheLayer cache{empty(cache_dtype, num_blocks * kKvBlockSize, kv_size),
                               empty(cache_dtype, num_blocks * kKvBlockSize, kv_size)};
      // Store the cached prefixes, then the new tokens, as two store_kv calls.
      for (bool is_new : {false, true}) {
        std::vector<float> k_rows, v_rows;
        std::vector<int32_t> slots;
        for (int32_t s = 0; s < num_seqs; ++s) {
          const int32_t begin = is_new ? c.cached[s] : 0;
          const int32_t end = is_new ? c.cached[s] + c.fresh[s] : c.cached[s];
          for (int32_t p = begin; p < end; ++p) {
            k_rows.insert(k_rows.end(), keys[s].begin() + p * kv_size, keys[s].begin() + (p + 1) * kv_size);
            v_rows.insert(v_rows.end(), values[s].begin() + p * kv_size, values[s].begin() + (p + 1) * kv_size);
            slots.push_back(tables[s][p / kKvBlockSize] * kKvBlockSize + p % kKvBlockSize);
          }
        }
        const int64_t rows = static_cast<int64_t>(slots.size());
        backend_->store_kv(upload(k_rows, DType::kF32, rows, kv_size), upload(v_rows, DType::kF32, rows, kv_size),
                           upload(slots, DType::kI32, 1, rows), cache);
      }
      std::vector<int32_t> query_starts = {0}, seq_lens, flat_tables(num_seqs * max_blocks, 0);
      for (int32_t s = 0; s < num_seqs; ++s) {
        query_starts.push_back(query_starts.back() + c.fresh[s]);
        seq_lens.push_back(c.cached[s] + c.fresh[s]);
        std::copy(tables[s].begin(), tables[s].end(), flat_tables.begin() + s * max_blocks);
      }
      const int32_t num_tokens = query_starts.back();
      const std::vector<float> q = random_floats(rng_, num_tokens * q_size);
      const AttentionMetadata metadata{num_seqs,
                                       upload(query_starts, DType::kI32, 1, num_seqs + 1),
                                       upload(seq_lens, DType::kI32, 1, num_seqs),
                                       upload(flat_tables, DType::kI32, num_seqs, max_blocks),
                                       19,
                                       41};
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
      const Tensor out = empty(DType::kF32, num_tokens, q_size);
      backend_->paged_attention(upload(q, DType::kF32, num_tokens, q_size), cache, metadata,
                                AttentionShape{c.num_heads, c.num_kv_heads, c.head_dim, scale}, out);

      std::vector<double> expected(static_cast<size_t>(num_tokens * q_size));
      for (int32_t s = 0; s < num_seqs; ++s) {
        for (int32_t i = 0; i < c.fresh[s]; ++i) {
          const int32_t t = query_starts[s] + i;
          const int32_t position = c.cached[s] + i;
          for (int32_t h = 0; h < c.num_heads; ++h) {
            const int64_t kv_offset = int64_t{h / (c.num_heads / c.num_kv_heads)} * c.head_dim;
            std::vector<double> scores(position + 1);
            for (int32_t p = 0; p <= position; ++p) {
              double dot = 0;
              for (int32_t d = 0; d < c.head_dim; ++d) {
                dot += double{q[t * q_size + h * c.head_dim + d]} * keys[s][p * kv_size + kv_offset + d];
              }
              scores[p] = dot * scale;
            }
            const double top = *std::max_element(scores.begin(), scores.end());
            double total = 0;
            for (double& score : scores) total += (score = std::exp(score - top));
            for (int32_t d = 0; d < c.head_dim; ++d) {
              double sum = 0;
              for (int32_t p = 0; p <= position; ++p) sum += scores[p] / total * values[s][p * kv_size + kv_offset + d];
              expected[t * q_size + h * c.head_dim + d] = sum;
            }
          }
        }
      }
      EXPECT_LT(normalised_error(download(out), expected), kMaxNormalisedError);
    }
}

TEST_P(CpuBackendTest, CopiesRoundTripThroughSlices) {
  const std::vector<float> values = random_floats(rng_, 12);
  const Tensor whole = upload(values, DType::kF32, 4, 3);
  const std::vector<float> middle = download(whole.row_slice(1, 2));
  EXPECT_TRUE(std::equal(middle.begin(), middle.end(), values.begin() + 3));
  EXPECT_EQ(whole.reshaped(2, 6).num_bytes(), 48);
}

// Backend::top_candidates against a full sort of each row: listed ids excluded and gathered, ties to the lower id,
// padding when fewer ids than k are unlisted, log-sum-exp over the whole row.
TEST_P(CpuBackendTest, TopCandidatesMatchAFullSort) {
  const int64_t rows = 4, vocab = 70;
  const int32_t k = 64;
  std::vector<float> logits(static_cast<size_t>(rows * vocab));
  for (float& l : logits) l = std::round(std::normal_distribution<float>(0, 3)(rng_));  // many ties
  logits[5] = -INFINITY;
  const std::vector<std::vector<int32_t>> listed = {{}, {3, 9, 69}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {40}};
  std::vector<int32_t> starts{0}, ids;
  for (const auto& row : listed) {
    ids.insert(ids.end(), row.begin(), row.end());
    starts.push_back(static_cast<int32_t>(ids.size()));
  }
  const Tensor cand_ids = empty(DType::kI32, rows, k), cand_logits = empty(DType::kF32, rows, k);
  const Tensor listed_logits = empty(DType::kF32, 1, static_cast<int64_t>(ids.size()));
  const Tensor lse = empty(DType::kF32, 1, rows);
  const std::vector<float> inverse_t = {1.0f, 2.5f, 0.5f, 1.0f / 0.6f};
  const Tensor tempered = empty(DType::kF32, 1, rows);
  backend_->top_candidates(upload(logits, DType::kF32, rows, vocab), upload(starts, DType::kI32, 1, rows + 1),
                           upload(ids, DType::kI32, 1, static_cast<int64_t>(ids.size())), k, listed_logits, cand_ids,
                           cand_logits, lse, upload(inverse_t, DType::kF32, 1, rows), tempered, Tensor{}, Tensor{});
  std::vector<int32_t> got_ids(static_cast<size_t>(rows * k));
  backend_->copy_to_host(cand_ids, std::as_writable_bytes(std::span(got_ids)));
  const std::vector<float> got_logits = download(cand_logits), got_listed = download(listed_logits),
                           got_lse = download(lse), got_tempered = download(tempered);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits.data() + r * vocab;
    std::vector<int32_t> order;
    for (int32_t id = 0; id < vocab; ++id)
      if (std::find(listed[r].begin(), listed[r].end(), id) == listed[r].end()) order.push_back(id);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
    for (int32_t i = 0; i < k; ++i) {
      const size_t at = static_cast<size_t>(r * k + i);
      if (static_cast<size_t>(i) < order.size()) {
        EXPECT_EQ(got_ids[at], order[i]) << "row " << r << " rank " << i;
        EXPECT_EQ(got_logits[at], row[order[i]]);
      } else {
        EXPECT_EQ(got_ids[at], -1);
        EXPECT_EQ(got_logits[at], -INFINITY);
      }
    }
    for (int32_t j = starts[r]; j < starts[r + 1]; ++j) EXPECT_EQ(got_listed[j], row[ids[j]]);
    double sum = 0;
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double{row[v]});
    EXPECT_NEAR(got_lse[r], std::log(sum), 1e-5);
    double unlisted = 0;  // the tempered mass leaves the listed ids out
    for (int32_t id = 0; id < vocab; ++id)
      if (std::find(listed[r].begin(), listed[r].end(), id) == listed[r].end())
        unlisted += std::exp(double{row[id]} * inverse_t[static_cast<size_t>(r)]);
    EXPECT_NEAR(got_tempered[r], std::log(unlisted), 1e-5);
  }
  // Without a log-sum-exp view the same candidates come back (the sum is skipped, not the selection).
  const Tensor quiet_ids = empty(DType::kI32, rows, k), quiet_logits = empty(DType::kF32, rows, k);
  backend_->top_candidates(upload(logits, DType::kF32, rows, vocab), upload(starts, DType::kI32, 1, rows + 1),
                           upload(ids, DType::kI32, 1, static_cast<int64_t>(ids.size())), k,
                           empty(DType::kF32, 1, static_cast<int64_t>(ids.size())), quiet_ids, quiet_logits, Tensor{},
                           Tensor{}, Tensor{}, Tensor{}, Tensor{});
  std::vector<int32_t> quiet(static_cast<size_t>(rows * k));
  backend_->copy_to_host(quiet_ids, std::as_writable_bytes(std::span(quiet)));
  EXPECT_EQ(quiet, got_ids);
  EXPECT_EQ(download(quiet_logits), got_logits);
}

// Structured output's masks: a constrained row gives what the same row masked by hand (forbidden ids at -inf)
// gives, except that forbidden ids are never candidates (padding comes sooner); a listed id the mask forbids
// gathers -inf; rows without a mask are untouched; bits past the vocabulary (70, not a multiple of 32) are ignored.
TEST_P(CpuBackendTest, TopCandidatesApplyTheMaskOfEachConstrainedRow) {
  const int64_t rows = 4, vocab = 70, words = 3;
  const int32_t k = 8;
  std::vector<float> logits(static_cast<size_t>(rows * vocab));
  for (float& l : logits) l = std::round(std::normal_distribution<float>(0, 3)(rng_));
  const std::vector<std::vector<int32_t>> listed = {{3, 9}, {}, {1, 2, 66}, {40}};
  std::vector<int32_t> starts{0}, ids;
  for (const auto& row : listed) {
    ids.insert(ids.end(), row.begin(), row.end());
    starts.push_back(static_cast<int32_t>(ids.size()));
  }
  // Mask 0: every third id and 66 (so listed 1 and 2 are forbidden, 66 allowed), all bits past 70 set. Mask 1:
  // id 40 only (listed: no candidate at all). Rows: 0 unconstrained, 1 and 2 under mask 0, 3 under mask 1.
  std::vector<uint32_t> masks(2 * words, 0);
  auto allow = [&](int m, int64_t id) { masks[m * words + id / 32] |= uint32_t{1} << (id % 32); };
  for (int64_t id = 0; id < vocab; id += 3) allow(0, id);
  allow(0, 66);
  for (int64_t id = vocab; id < words * 32; ++id) allow(0, id);
  allow(1, 40);
  const std::vector<int32_t> mask_rows = {-1, 0, 0, 1};
  const Tensor cand_ids = empty(DType::kI32, rows, k), cand_logits = empty(DType::kF32, rows, k);
  const Tensor listed_logits = empty(DType::kF32, 1, static_cast<int64_t>(ids.size()));
  const Tensor lse = empty(DType::kF32, 1, rows), tempered = empty(DType::kF32, 1, rows);
  const std::vector<float> inverse_t(static_cast<size_t>(rows), 1.0f);
  backend_->top_candidates(upload(logits, DType::kF32, rows, vocab), upload(starts, DType::kI32, 1, rows + 1),
                           upload(ids, DType::kI32, 1, static_cast<int64_t>(ids.size())), k, listed_logits, cand_ids,
                           cand_logits, lse, upload(inverse_t, DType::kF32, 1, rows), tempered,
                           upload(mask_rows, DType::kI32, 1, rows), upload(masks, DType::kU32, 2, words));
  std::vector<int32_t> got_ids(static_cast<size_t>(rows * k));
  backend_->copy_to_host(cand_ids, std::as_writable_bytes(std::span(got_ids)));
  const std::vector<float> got_logits = download(cand_logits), got_listed = download(listed_logits),
                           got_lse = download(lse), got_tempered = download(tempered);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits.data() + r * vocab;
    auto allowed = [&](int32_t id) {
      return mask_rows[r] < 0 || ((masks[mask_rows[r] * words + id / 32] >> (id % 32)) & 1u);
    };
    std::vector<int32_t> order;
    double sum = 0, unlisted = 0;
    for (int32_t id = 0; id < vocab; ++id) {
      if (!allowed(id)) continue;
      sum += std::exp(double{row[id]});
      if (std::find(listed[r].begin(), listed[r].end(), id) != listed[r].end()) continue;
      order.push_back(id);
      unlisted += std::exp(double{row[id]});
    }
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
    for (int32_t i = 0; i < k; ++i) {
      const size_t at = static_cast<size_t>(r * k + i);
      EXPECT_EQ(got_ids[at], static_cast<size_t>(i) < order.size() ? order[i] : -1) << "row " << r << " rank " << i;
      EXPECT_EQ(got_logits[at], static_cast<size_t>(i) < order.size() ? row[order[i]] : -INFINITY);
    }
    for (int32_t j = starts[r]; j < starts[r + 1]; ++j)
      EXPECT_EQ(got_listed[j], allowed(ids[j]) ? row[ids[j]] : -INFINITY) << "listed " << ids[j];
    EXPECT_NEAR(got_lse[r], std::log(sum), 1e-5);
    if (unlisted > 0)
      EXPECT_NEAR(got_tempered[r], std::log(unlisted), 1e-5);
    else
      EXPECT_EQ(got_tempered[r], -INFINITY);
  }
  EXPECT_EQ(got_ids[3 * k], -1);                     // the one id row 3 allows is listed: nothing is left to select
  EXPECT_EQ(got_listed[4], logits[2 * vocab + 66]);  // allowed by the mask that forbids its neighbours 1 and 2
}

INSTANTIATE_TEST_SUITE_P(Threads, CpuBackendTest, ::testing::Values(1, 3));

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(cpu::f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(cpu::bf16_to_f32(0x3f80), 1.0f);
  // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
  EXPECT_EQ(cpu::f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);
  EXPECT_EQ(cpu::f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_TRUE(std::isnan(cpu::bf16_to_f32(cpu::f32_to_bf16(NAN))));
  EXPECT_EQ(cpu::f32_to_bf16(INFINITY), 0x7f80);
}

}  // namespace
}  // namespace bm::engine
