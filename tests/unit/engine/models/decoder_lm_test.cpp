// The decoder against Hugging Face transformers: tests/tools/model_make_reference_checkpoints.py made the
// checkpoints in tests/data/models/ (bf16 weights, save_pretrained) and recorded what transformers computes
// for them in float32. Our forward runs through CausalLM with block tables built here.
//
// Tolerance: both sides compute in float32 from the same bf16 weights, so they differ only by rounding order
// (dot products of 128..320 terms, softmax, cos/sin of 1-ulp-different angles). Measured, the largest logit
// difference is below 2e-5 with logits of magnitude ~4; kLogitTolerance = 1e-3 leaves 50x room while a real bug
// (a dropped bias, a wrong RoPE pairing, an off-by-one position) moves logits by 1e-1 or more. With a BF16 KV
// cache K/V are rounded to 8 significant bits (relative error up to 2^-9), which moved logits by up to 6.5e-2
// here; that case uses 0.15 and demands the greedy token only where transformers' top two logits are more than
// 0.3 apart. The generator refuses greedy steps whose top two logits are closer than 2e-3, so with the F32 cache
// every greedy token must be identical.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <numeric>
#include <optional>
#include <random>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cpu/gemm_path.h"
#include "engine/model/checkpoint.h"
#include "engine/model/model_config.h"
#include "engine/model/safetensors_writer.h"
#include "engine/models/decoder_lm.h"
#include "engine/models/decode_graphs.h"
#include "engine/models/decoder_spec.h"
#include "engine/models/decoder_weights.h"
#include "engine/models/model_loader.h"
#include "nlohmann/json.hpp"
#include "tests/unit/engine/model/test_files.h"

namespace bm::engine {
namespace {

constexpr double kLogitTolerance = 1e-3;
constexpr double kBf16CacheLogitTolerance = 0.15;
constexpr double kBf16CacheGreedyMargin = 0.3;

// The default path takes bf16 activations where the CPU has avx512-bf16 (cpu::best_gemm_path, as vLLM's CPU build
// and GPU kernels run them), so there every checkpoint is held to the BF16 tolerance and greedy margin, as the
// forced avx512-bf16 path is; the forced F32 paths keep the float tolerance.
bool default_path_rounds_activations(const std::string&) {
  return cpu::best_gemm_path() == cpu::GemmPath::kAvx512Bf16;
}
double default_tolerance(const std::string& model) {
  return default_path_rounds_activations(model) ? kBf16CacheLogitTolerance : kLogitTolerance;
}
double default_margin(const std::string& model) {
  return default_path_rounds_activations(model) ? kBf16CacheGreedyMargin : 0.0;
}

std::filesystem::path models_dir() {
  const char* source = std::getenv("BMSERVER_SOURCE_DIR");
  return std::filesystem::path(source != nullptr ? source : ".") / "tests/data/models";
}

struct Prompt {
  std::vector<int32_t> ids;
  std::vector<float> prefill_logits;
  std::vector<int32_t> greedy_ids;
  std::vector<std::vector<float>> step_logits;
};

std::vector<Prompt> read_reference(const std::string& model) {
  std::ifstream in(models_dir() / model / "reference.json");
  const nlohmann::json reference = nlohmann::json::parse(in);
  std::vector<Prompt> prompts;
  for (const auto& entry : reference.at("prompts")) {
    prompts.push_back(Prompt{entry.at("ids").get<std::vector<int32_t>>(),
                             entry.at("prefill_logits").get<std::vector<float>>(),
                             entry.at("greedy_ids").get<std::vector<int32_t>>(),
                             entry.at("step_logits").get<std::vector<std::vector<float>>>()});
  }
  return prompts;
}

double max_abs_diff(std::span<const float> actual, const std::vector<float>& expected) {
  EXPECT_EQ(actual.size(), expected.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(actual.size(), expected.size()); ++i) {
    worst = std::max(worst, std::abs(double{actual[i]} - expected[i]));
  }
  return worst;
}

int32_t argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

double top2_margin(std::vector<float> logits) {
  std::partial_sort(logits.begin(), logits.begin() + 2, logits.end(), std::greater<>());
  return double{logits[0]} - logits[1];
}

// Hands out distinct KV blocks in a scrambled order, so that paging (not contiguity) is what makes it work.
class BlockPool {
 public:
  explicit BlockPool(int32_t num_blocks) : free_(static_cast<size_t>(num_blocks)) {
    std::iota(free_.begin(), free_.end(), 0);
    std::shuffle(free_.begin(), free_.end(), std::mt19937(7));
  }
  // Grows `table` to cover `num_tokens`.
  void cover(std::vector<int32_t>& table, int32_t num_tokens) {
    while (static_cast<int32_t>(table.size()) * kBlockSize < num_tokens) {
      table.push_back(free_.back());
      free_.pop_back();
    }
  }

 private:
  std::vector<int32_t> free_;
};

std::unique_ptr<CausalLM> load(const std::string& model, DType kv_dtype = DType::kF32, int32_t num_blocks = 64,
                               const std::string& gemm_path = "") {
  LoadOptions options;
  options.num_threads = 2;
  options.kv_cache_dtype = kv_dtype;
  options.cpu_gemm_path = gemm_path;
  absl::StatusOr<std::unique_ptr<CausalLM>> lm = load_causal_lm(models_dir() / model, options);
  EXPECT_TRUE(lm.ok()) << lm.status();
  if (!lm.ok()) return nullptr;
  EXPECT_TRUE((*lm)->allocate_kv_cache(num_blocks).ok());
  return std::move(*lm);
}

class DecoderLMTest : public ::testing::TestWithParam<std::string> {};

// Prefill, then 16 greedy decode steps, one sequence at a time. Greedy tokens must agree at every step where
// transformers' top two logits are at least `greedy_margin` apart.
void check_prefill_and_greedy(const std::string& model, DType kv_dtype, double tolerance, double greedy_margin,
                              const std::string& gemm_path = "") {
  std::unique_ptr<CausalLM> lm = load(model, kv_dtype, 64, gemm_path);
  ASSERT_NE(lm, nullptr);
  const int32_t vocab = lm->info().vocab_size;
  BlockPool pool(64);
  double worst = 0;
  for (const Prompt& prompt : read_reference(model)) {
    SCOPED_TRACE(::testing::Message() << "prompt of " << prompt.ids.size() << " tokens");
    SequenceChunk chunk;
    chunk.num_new_tokens = static_cast<int32_t>(prompt.ids.size());
    chunk.wants_logits = true;
    pool.cover(chunk.block_table, chunk.num_new_tokens);
    std::vector<float> logits;
    ASSERT_TRUE(lm->forward(ForwardBatch{prompt.ids, {chunk}}, logits).ok());
    ASSERT_EQ(static_cast<int32_t>(logits.size()), vocab);
    worst = std::max(worst, max_abs_diff(logits, prompt.prefill_logits));
    for (size_t step = 0; step < prompt.greedy_ids.size(); ++step) {
      const std::vector<float>& expected = step == 0 ? prompt.prefill_logits : prompt.step_logits[step - 1];
      if (top2_margin(expected) >= greedy_margin) {
        EXPECT_EQ(argmax(logits), prompt.greedy_ids[step]) << "greedy step " << step;
      }
      chunk.num_cached_tokens += chunk.num_new_tokens;
      chunk.num_new_tokens = 1;
      pool.cover(chunk.block_table, chunk.num_cached_tokens + 1);
      ASSERT_TRUE(lm->forward(ForwardBatch{{prompt.greedy_ids[step]}, {chunk}}, logits).ok());
      worst = std::max(worst, max_abs_diff(logits, prompt.step_logits[step]));
    }
  }
  EXPECT_LT(worst, tolerance);
  std::cout << "[ max |logit - transformers| ] " << model << " (" << dtype_name(kv_dtype) << " KV"
            << (gemm_path.empty() ? "" : ", GEMM " + gemm_path) << "): " << worst << "\n";
}

TEST_P(DecoderLMTest, PrefillAndGreedyDecodeMatchTransformers) {
  check_prefill_and_greedy(GetParam(), DType::kF32, default_tolerance(GetParam()), default_margin(GetParam()));
}

TEST_P(DecoderLMTest, Bf16KvCacheStaysCloseAndGreedyAgrees) {
  check_prefill_and_greedy(GetParam(), DType::kBF16, kBf16CacheLogitTolerance, kBf16CacheGreedyMargin);
}

// Each CPU GEMM instruction path this CPU has, forced in turn: the F32-activation ones keep the float tolerance
// and every greedy token; avx512-bf16 rounds the activations to bf16 before each linear layer (a relative error
// up to 2^-9 per input, as a BF16 cache rounds K/V), so it is held to the BF16 tolerance and margin.
TEST_P(DecoderLMTest, EachCpuGemmPathMatchesTransformers) {
  for (const char* path : {"avx512", "avx2", "scalar"}) {
    if (!cpu::parse_gemm_path(path).ok()) continue;
    check_prefill_and_greedy(GetParam(), DType::kF32, kLogitTolerance, 0.0, path);
  }
  if (cpu::parse_gemm_path("avx512-bf16").ok()) {
    check_prefill_and_greedy(GetParam(), DType::kF32, kBf16CacheLogitTolerance, kBf16CacheGreedyMargin, "avx512-bf16");
  }
}

// All prompts in one batch, the longest one split into chunks: the same logits as one at a time.
TEST_P(DecoderLMTest, BatchedAndChunkedPrefillMatchTransformers) {
  std::unique_ptr<CausalLM> lm = load(GetParam());
  ASSERT_NE(lm, nullptr);
  const int32_t vocab = lm->info().vocab_size;
  const std::vector<Prompt> prompts = read_reference(GetParam());
  BlockPool pool(64);
  ForwardBatch batch;
  for (const Prompt& prompt : prompts) {
    SequenceChunk chunk;
    chunk.num_new_tokens = static_cast<int32_t>(prompt.ids.size());
    chunk.wants_logits = true;
    pool.cover(chunk.block_table, chunk.num_new_tokens);
    batch.sequences.push_back(chunk);
    batch.token_ids.insert(batch.token_ids.end(), prompt.ids.begin(), prompt.ids.end());
  }
  std::vector<float> logits;
  ASSERT_TRUE(lm->forward(batch, logits).ok());
  ASSERT_EQ(logits.size(), prompts.size() * static_cast<size_t>(vocab));
  for (size_t s = 0; s < prompts.size(); ++s) {
    EXPECT_LT(max_abs_diff(std::span(logits).subspan(s * vocab, vocab), prompts[s].prefill_logits),
              default_tolerance(GetParam()))
        << "sequence " << s;
  }

  const Prompt& longest = prompts.back();
  SequenceChunk chunk;
  for (int32_t begin = 0; begin < static_cast<int32_t>(longest.ids.size()); begin += 10) {
    chunk.num_cached_tokens = begin;
    chunk.num_new_tokens = std::min<int32_t>(10, static_cast<int32_t>(longest.ids.size()) - begin);
    chunk.wants_logits = begin + chunk.num_new_tokens == static_cast<int32_t>(longest.ids.size());
    pool.cover(chunk.block_table, begin + chunk.num_new_tokens);
    const std::vector<int32_t> ids(longest.ids.begin() + begin, longest.ids.begin() + begin + chunk.num_new_tokens);
    ASSERT_TRUE(lm->forward(ForwardBatch{ids, {chunk}}, logits).ok());
    EXPECT_EQ(logits.size(), chunk.wants_logits ? static_cast<size_t>(vocab) : 0u);
  }
  EXPECT_LT(max_abs_diff(logits, longest.prefill_logits), default_tolerance(GetParam()));
}

// The CPU kernels sum each output in a fixed order whatever the batch, so the last token's logits are the same
// bits whether it came in a prefill or as a decode step after the rest.
TEST_P(DecoderLMTest, PrefillAndDecodeOfTheSameTokenAreBitIdentical) {
  std::unique_ptr<CausalLM> lm = load(GetParam());
  ASSERT_NE(lm, nullptr);
  const std::vector<int32_t> ids = read_reference(GetParam()).back().ids;
  const int32_t n = static_cast<int32_t>(ids.size());
  std::vector<float> prefilled, decoded;
  ASSERT_TRUE(lm->forward(ForwardBatch{ids, {SequenceChunk{0, n, {0, 1, 2}, true}}}, prefilled).ok());
  const std::vector<int32_t> head(ids.begin(), ids.end() - 1);
  ASSERT_TRUE(lm->forward(ForwardBatch{head, {SequenceChunk{0, n - 1, {5, 6, 7}, false}}}, decoded).ok());
  ASSERT_TRUE(lm->forward(ForwardBatch{{ids.back()}, {SequenceChunk{n - 1, 1, {5, 6, 7}, true}}}, decoded).ok());
  EXPECT_EQ(prefilled, decoded);
}

// The fused q/k/v and gate/up projections (issue 21: one GEMM each, rope_store_kv, silu_mul_fused) give the bits
// of the projections loaded apart, for a batched prefill of every reference prompt and decode steps after it: an
// output's dot product does not depend on how many outputs its GEMM has, and the fused ops keep the unfused ops'
// arithmetic. So the transformers comparisons above hold for both layouts.
TEST_P(DecoderLMTest, FusedProjectionsGiveTheUnfusedBits) {
  LoadOptions options;
  options.num_threads = 2;
  options.kv_cache_dtype = DType::kBF16;
  absl::StatusOr<std::unique_ptr<CausalLM>> fused = load_causal_lm(models_dir() / GetParam(), options);
  options.fuse_projections = false;
  absl::StatusOr<std::unique_ptr<CausalLM>> apart = load_causal_lm(models_dir() / GetParam(), options);
  ASSERT_TRUE(fused.ok() && apart.ok());
  ASSERT_TRUE((*fused)->allocate_kv_cache(64).ok());
  ASSERT_TRUE((*apart)->allocate_kv_cache(64).ok());
  const int32_t vocab = (*fused)->info().vocab_size;
  BlockPool pool(64);
  ForwardBatch batch;
  std::vector<SequenceChunk> seqs;
  for (const Prompt& prompt : read_reference(GetParam())) {
    SequenceChunk chunk{0, static_cast<int32_t>(prompt.ids.size()), {}, true};
    pool.cover(chunk.block_table, chunk.num_new_tokens);
    batch.sequences.push_back(chunk);
    batch.token_ids.insert(batch.token_ids.end(), prompt.ids.begin(), prompt.ids.end());
    seqs.push_back(chunk);
  }
  for (int step = 0; step < 4; ++step) {
    SCOPED_TRACE(::testing::Message() << "step " << step << " (0: prefill)");
    std::vector<float> expected, actual;
    ASSERT_TRUE((*apart)->forward(batch, expected).ok());
    ASSERT_TRUE((*fused)->forward(batch, actual).ok());
    ASSERT_EQ(expected.size(), seqs.size() * static_cast<size_t>(vocab));
    ASSERT_EQ(expected, actual);
    batch = ForwardBatch{};
    for (size_t s = 0; s < seqs.size(); ++s) {
      SequenceChunk& chunk = seqs[s];
      chunk.num_cached_tokens += chunk.num_new_tokens;
      chunk.num_new_tokens = 1;
      pool.cover(chunk.block_table, chunk.num_cached_tokens + 1);
      batch.sequences.push_back(chunk);
      batch.token_ids.push_back(argmax(std::span(expected).subspan(s * vocab, vocab)));
    }
  }
}

// Decode steps replayed from recorded graphs (the CPU backend records them as the GPU records CUDA graphs) give
// the same bits as steps run op by op, for batches that shrink and grow, padded to the graphs' batch sizes. A
// replay reads every per-step value from the uploaded buffers, so a value baked in at capture would show here.
// Loads the model twice, one with decode graphs for up to 8 sequences (capture_budget: those captured at load, none
// when absent), prefills the reference prompts on both, then runs 8 decode steps whose batch shrinks and grows,
// expecting the same bits from both at every step. Returns the graphed model's graph statistics.
DecodeGraphStats decode_with_and_without_graphs(const std::string& model,
                                                std::optional<std::chrono::milliseconds> capture_budget) {
  LoadOptions options;
  options.num_threads = 2;
  absl::StatusOr<std::unique_ptr<CausalLM>> eager = load_causal_lm(models_dir() / model, options);
  absl::StatusOr<std::unique_ptr<CausalLM>> graphed = load_causal_lm(models_dir() / model, options);
  EXPECT_TRUE(eager.ok() && graphed.ok());
  if (!eager.ok() || !graphed.ok()) return {};
  EXPECT_TRUE((*graphed)->enable_decode_graphs(8).ok());
  EXPECT_TRUE((*eager)->allocate_kv_cache(64).ok());
  EXPECT_TRUE((*graphed)->allocate_kv_cache(64).ok());
  if (capture_budget) {
    EXPECT_TRUE((*graphed)->capture_decode_graphs(*capture_budget).ok());
  }
  const DecodeGraphStats at_load = (*graphed)->decode_graph_stats();
  EXPECT_EQ(at_load.eager, 0);
  EXPECT_EQ(at_load.replayed, 0);
  const int32_t vocab = (*eager)->info().vocab_size;
  const std::vector<Prompt> prompts = read_reference(model);
  BlockPool pool(64);
  ForwardBatch prefill;
  std::vector<SequenceChunk> seqs;
  for (const Prompt& prompt : prompts) {
    SequenceChunk chunk{0, static_cast<int32_t>(prompt.ids.size()), {}, true};
    pool.cover(chunk.block_table, chunk.num_new_tokens);
    prefill.sequences.push_back(chunk);
    prefill.token_ids.insert(prefill.token_ids.end(), prompt.ids.begin(), prompt.ids.end());
    seqs.push_back(chunk);
  }
  std::vector<float> expected, actual;
  EXPECT_TRUE((*eager)->forward(prefill, expected).ok());
  EXPECT_TRUE((*graphed)->forward(prefill, actual).ok());  // a prefill runs uncaptured
  EXPECT_EQ(expected, actual);
  std::vector<int32_t> next(seqs.size());
  for (size_t s = 0; s < seqs.size(); ++s) next[s] = argmax(std::span(expected).subspan(s * vocab, vocab));
  // Steps with all sequences, then without the first two (another batch size), then all again.
  for (int step = 0; step < 8; ++step) {
    SCOPED_TRACE(::testing::Message() << "decode step " << step);
    ForwardBatch batch;
    std::vector<size_t> members;
    for (size_t s = 0; s < seqs.size(); ++s) {
      if (step % 3 == 1 && s < 2) continue;
      SequenceChunk& chunk = seqs[s];
      chunk.num_cached_tokens += chunk.num_new_tokens;
      chunk.num_new_tokens = 1;
      pool.cover(chunk.block_table, chunk.num_cached_tokens + 1);
      batch.sequences.push_back(chunk);
      batch.token_ids.push_back(next[s]);
      members.push_back(s);
    }
    EXPECT_TRUE((*eager)->forward(batch, expected).ok());
    EXPECT_TRUE((*graphed)->forward(batch, actual).ok());
    EXPECT_EQ(expected, actual);
    if (expected != actual || expected.size() != members.size() * static_cast<size_t>(vocab)) return {};
    for (size_t i = 0; i < members.size(); ++i)
      next[members[i]] = argmax(std::span(expected).subspan(i * vocab, vocab));
  }
  EXPECT_EQ((*eager)->decode_graph_stats().captured, 0);
  return (*graphed)->decode_graph_stats();
}

// Decode steps replayed from recorded graphs (the CPU backend records them as the GPU records CUDA graphs) give
// the same bits as steps run op by op, for batches that shrink and grow, padded to the graphs' batch sizes. A
// replay reads every per-step value from the uploaded buffers, so a value baked in at capture would show here.
TEST_P(DecoderLMTest, DecodeStepsReplayedFromGraphsGiveTheSameBits) {
  const DecodeGraphStats stats = decode_with_and_without_graphs(GetParam(), std::nullopt);
  EXPECT_EQ(stats.captured, 2);  // batches of 4 and 2 sequences, one context bound
  EXPECT_EQ(stats.eager, 2);     // each shape's first step ran uncaptured, then was recorded
  EXPECT_EQ(stats.replayed, 6);
  EXPECT_EQ(stats.captured_at_load, 0);
  EXPECT_TRUE(stats.disabled.empty());
}

// Captured at load (issue 21 item 7): every batch size of every context bound is recorded before the first step,
// from padding-only inputs, so no decode step runs uncaptured, and the replays still give the eager bits (the
// padding rows stored nothing in the cache that a real sequence then reads).
TEST_P(DecoderLMTest, DecodeGraphsCapturedAtLoadServeEveryDecodeStep) {
  const DecodeGraphStats stats = decode_with_and_without_graphs(GetParam(), std::chrono::hours(1));
  LoadOptions options;
  absl::StatusOr<std::unique_ptr<CausalLM>> lm = load_causal_lm(models_dir() / GetParam(), options);
  ASSERT_TRUE(lm.ok());
  const DecodeGraphs shapes(8, (*lm)->info().max_position_embeddings);
  const int64_t all = static_cast<int64_t>(shapes.batch_sizes().size() * shapes.context_bounds().size());
  EXPECT_EQ(stats.captured_at_load, all);
  EXPECT_EQ(stats.captured, all);
  EXPECT_EQ(stats.eager, 0);
  EXPECT_EQ(stats.replayed, 8);
  EXPECT_GT(stats.load_capture_ms, 0);
  EXPECT_TRUE(stats.disabled.empty());
}

// A spent budget starts no capture at load; every shape is then captured on first use, as before.
TEST_P(DecoderLMTest, DecodeGraphsBeyondTheLoadBudgetAreCapturedOnFirstUse) {
  const DecodeGraphStats stats = decode_with_and_without_graphs(GetParam(), std::chrono::milliseconds(0));
  EXPECT_EQ(stats.captured_at_load, 0);
  EXPECT_EQ(stats.captured, 2);
  EXPECT_EQ(stats.eager, 2);
  EXPECT_EQ(stats.replayed, 6);
}

// The CPU backend with its step recording, except that every capture fails as a CUDA graph capture can (an
// unsupported call, an invalidated capture): end_capture ends the recording and reports an error, the device
// itself stays fine. Everything else is the CPU backend's.
class CaptureFailingBackend final : public Backend {
 public:
  explicit CaptureFailingBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}
  std::string_view name() const override { return inner_->name(); }
  MemoryInfo memory_info() const override { return inner_->memory_info(); }
  absl::StatusOr<std::unique_ptr<Buffer>> allocate(int64_t num_bytes) override { return inner_->allocate(num_bytes); }
  void copy_to_device(std::span<const std::byte> src, const Tensor& dst) override { inner_->copy_to_device(src, dst); }
  void copy_linear_weight_to_device(std::span<const std::byte> src, const Tensor& dst) override {
    inner_->copy_linear_weight_to_device(src, dst);
  }
  void copy_to_host(const Tensor& src, std::span<std::byte> dst) override { inner_->copy_to_host(src, dst); }
  void synchronize() override { inner_->synchronize(); }
  absl::Status device_status() const override { return inner_->device_status(); }
  bool records_steps() const override { return true; }
  absl::Status begin_capture() override { return inner_->begin_capture(); }
  absl::StatusOr<std::unique_ptr<StepGraph>> end_capture() override {
    EXPECT_TRUE(inner_->end_capture().ok());  // the recording ends either way
    ++failed_captures;
    return absl::InternalError("the CUDA graph capture failed (the device is fine): cudaErrorStreamCaptureUnsupported");
  }
  void replay(const StepGraph& graph) override { inner_->replay(graph); }
  absl::StatusOr<int64_t> quantized_matrix_bytes(const QuantizedShape& shape) const override {
    return inner_->quantized_matrix_bytes(shape);
  }
  void copy_quantized_to_device(const QuantizedMatrixSource& src, const QuantizedMatrix& dst) override {
    inner_->copy_quantized_to_device(src, dst);
  }
  void quantized_linear(const Tensor& x, const QuantizedMatrix& weight, const Tensor* bias,
                        const Tensor& out) override {
    inner_->quantized_linear(x, weight, bias, out);
  }
  void embedding(const Tensor& table, const Tensor& ids, const Tensor& out) override {
    inner_->embedding(table, ids, out);
  }
  void rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) override {
    inner_->rms_norm(x, weight, eps, out);
  }
  void add_rms_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, float eps,
                    const Tensor& out) override {
    inner_->add_rms_norm(x, residual, weight, eps, out);
  }
  void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, const Tensor& out) override {
    inner_->linear(x, weight, bias, out);
  }
  void rope(const Tensor& x, const Tensor& positions, const Tensor& inv_freq, int32_t head_dim) override {
    inner_->rope(x, positions, inv_freq, head_dim);
  }
  void store_kv(const Tensor& k, const Tensor& v, const Tensor& slot_mapping, const KvCacheLayer& cache) override {
    inner_->store_kv(k, v, slot_mapping, cache);
  }
  void paged_attention(const Tensor& q, const KvCacheLayer& cache, const AttentionMetadata& metadata,
                       const AttentionShape& shape, const Tensor& out) override {
    inner_->paged_attention(q, cache, metadata, shape, out);
  }
  void rope_store_kv(const Tensor& qkv, const RotaryAngles& angles, const AttentionShape& shape,
                     const Tensor& slot_mapping, const KvCacheLayer& cache, const Tensor& q_out) override {
    inner_->rope_store_kv(qkv, angles, shape, slot_mapping, cache, q_out);
  }
  void silu_mul(const Tensor& gate, const Tensor& up, const Tensor& out) override { inner_->silu_mul(gate, up, out); }
  void silu_mul_fused(const Tensor& gate_up, const Tensor& out) override { inner_->silu_mul_fused(gate_up, out); }
  void add(const Tensor& a, const Tensor& b, const Tensor& out) override { inner_->add(a, b, out); }
  void gather_rows(const Tensor& x, const Tensor& row_ids, const Tensor& out) override {
    inner_->gather_rows(x, row_ids, out);
  }
  void top_candidates(const Tensor& logits, const Tensor& listed_starts, const Tensor& listed_ids, int32_t k,
                      const Tensor& listed_logits, const Tensor& cand_ids, const Tensor& cand_logits,
                      const Tensor& log_sum_exp, const Tensor& inverse_temperatures, const Tensor& tempered_lse,
                      const Tensor& mask_rows, const Tensor& masks) override {
    inner_->top_candidates(logits, listed_starts, listed_ids, k, listed_logits, cand_ids, cand_logits, log_sum_exp,
                           inverse_temperatures, tempered_lse, mask_rows, masks);
  }

  static inline int failed_captures = 0;

 private:
  std::unique_ptr<Backend> inner_;
};

// A capture that fails (docs/cuda-backend.md, "Decode graphs") turns graphs off for the model and the steps run
// eager: the step that tried to record still returns its (eager) logits, nothing reports a device failure, and
// every later decode step matches an eager model bit for bit.
// What one decode layer records (issue 21's fused decode step, counted as bm_backend_ops_bench prints it): fused,
// the three q/k/v GEMMs become one and rope × 2 + store_kv one rope_store_kv, gate and up one GEMM — 5 ops fewer,
// within the 10 — for a model with biases (Qwen2) and one without (Llama); quantized projections stay
// apart, so a GPTQ layer records what an unfused one does.
TEST(DecoderLMGraphTest, AFusedDecodeLayerRecordsFiveOpsFewer) {
  for (const std::string model : {"qwen2-tied", "llama3", "qwen2-gptq-int4"}) {
    SCOPED_TRACE(model);
    int64_t nodes[2] = {0, 0};
    for (const bool fused : {false, true}) {
      LoadOptions options;
      options.num_threads = 2;
      options.fuse_projections = fused;
      absl::StatusOr<std::unique_ptr<CausalLM>> lm = load_causal_lm(models_dir() / model, options);
      ASSERT_TRUE(lm.ok()) << lm.status();
      ASSERT_TRUE((*lm)->allocate_kv_cache(8).ok());
      absl::StatusOr<int64_t> counted = (*lm)->decode_layer_nodes(2);
      ASSERT_TRUE(counted.ok()) << counted.status();
      nodes[fused] = *counted;
    }
    if (model == "qwen2-gptq-int4") {
      EXPECT_EQ(nodes[true], nodes[false]);
    } else {
      EXPECT_EQ(nodes[true], nodes[false] - 5);
      EXPECT_LE(nodes[true], 10);
    }
  }
}

TEST(DecoderLMGraphTest, AFailedCaptureTurnsGraphsOffAndStepsRunEager) {
  const std::filesystem::path dir = models_dir() / "llama3";
  absl::StatusOr<ModelConfig> config = read_model_config(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<DecoderSpec> spec = make_decoder_spec(*config, "cpu");
  ASSERT_TRUE(spec.ok()) << spec.status();
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  std::unique_ptr<Backend> backend =
      std::make_unique<CaptureFailingBackend>(create_cpu_backend(CpuBackendOptions{2, cpu::GemmPath::kAuto}));
  absl::StatusOr<std::unique_ptr<DecoderWeights>> weights = load_decoder_weights(**checkpoint, *spec, *backend);
  ASSERT_TRUE(weights.ok()) << weights.status();
  absl::StatusOr<std::unique_ptr<DecoderLM>> graphed =
      DecoderLM::create(*spec, std::move(backend), std::move(*weights), DType::kF32);
  ASSERT_TRUE(graphed.ok()) << graphed.status();
  std::unique_ptr<CausalLM> eager = load("llama3");
  ASSERT_NE(eager, nullptr);
  ASSERT_TRUE((*graphed)->enable_decode_graphs(4).ok());
  ASSERT_TRUE((*graphed)->allocate_kv_cache(64).ok());
  CaptureFailingBackend::failed_captures = 0;
  const int32_t vocab = eager->info().vocab_size;
  std::vector<float> expected, actual;
  ForwardBatch prefill{{1, 2, 3, 4, 5}, {SequenceChunk{0, 5, {0}, true}}};
  ASSERT_TRUE(eager->forward(prefill, expected).ok());
  ASSERT_TRUE((*graphed)->forward(prefill, actual).ok());
  ASSERT_EQ(expected, actual);
  for (int32_t step = 0; step < 4; ++step) {
    SCOPED_TRACE(::testing::Message() << "decode step " << step);
    const int32_t next = argmax(std::span(expected).subspan(0, vocab));
    const ForwardBatch batch{{next}, {SequenceChunk{5 + step, 1, {0}, true}}};
    ASSERT_TRUE(eager->forward(batch, expected).ok());
    ASSERT_TRUE((*graphed)->forward(batch, actual).ok()) << "a failed capture must not fail the step";
    ASSERT_EQ(expected, actual);
  }
  const DecodeGraphStats stats = (*graphed)->decode_graph_stats();
  EXPECT_EQ(CaptureFailingBackend::failed_captures, 1) << "after the first failure nothing is captured again";
  EXPECT_EQ(stats.captured, 0);
  EXPECT_EQ(stats.replayed, 0);
  EXPECT_NE(stats.disabled.find("cudaErrorStreamCaptureUnsupported"), std::string::npos) << stats.disabled;
}

// qwen2_5_vl-text is the language model of a Qwen2.5-VL checkpoint (tests/tools/vl_make_text_fixtures.py: the
// hub layout, model.* beside visual.*) on text-only prompts, where its M-RoPE is Qwen2's 1-D RoPE.
// The quantized checkpoints (tests/tools/model_make_quantized_checkpoints.py) run through the same suite: their
// reference is transformers in float32 on the weights the quantizer's own unpack dequantizes, which is what our
// kernels compute too (W = (q - zero) * scale exactly in F32), so the float tolerances hold. How we compare with
// the quantizer's CPU kernels themselves is quantized_model_test.cpp's subject.
INSTANTIATE_TEST_SUITE_P(Models, DecoderLMTest,
                         ::testing::Values("qwen2-tied", "qwen2-untied-sharded", "llama3", "qwen2-gptq-int4",
                                           "qwen2-gptq-int4-act", "qwen2-gptq-int8", "qwen2-gptq-int8-act", "qwen2-awq",
                                           "llama3-gptq-int4-act", "llama3-awq", "qwen2_5_vl-text"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(DecoderLMInfoTest, DescribesTheModel) {
  std::unique_ptr<CausalLM> lm = load("llama3");
  ASSERT_NE(lm, nullptr);
  EXPECT_EQ(lm->info().architecture, "LlamaForCausalLM");
  EXPECT_EQ(lm->info().vocab_size, 512);
  EXPECT_EQ(lm->info().num_layers, 2);
  EXPECT_EQ(lm->info().max_position_embeddings, 131072);
  EXPECT_EQ(lm->info().kv_bytes_per_token, 2 * 2 * 1 * 32 * 4);  // K and V, 2 layers, 1 kv head of 32, F32
  EXPECT_GT(lm->info().weight_bytes, 900'000);
  // Untied: a decode step reads one row of the 512-row input table, so the table is not charged to it.
  EXPECT_GT(lm->info().decode_read_bytes, 0);
  EXPECT_LT(lm->info().decode_read_bytes, lm->info().weight_bytes);
  EXPECT_EQ((lm->info().weight_bytes - lm->info().decode_read_bytes) % 512, 0);
  // Tied: the table is the lm_head, read whole every step.
  std::unique_ptr<CausalLM> tied = load("qwen2-tied");
  ASSERT_NE(tied, nullptr);
  EXPECT_EQ(tied->info().decode_read_bytes, tied->info().weight_bytes);
}

// transformers 5 names a Qwen2.5-VL's language model model.language_model.* (and its tower model.visual.*) in
// memory; a checkpoint saved with those names loads to the same logits as the hub layout.
TEST(DecoderLMInfoTest, LoadsQwen25VlWithTheLanguageModelPrefix) {
  const std::filesystem::path source = models_dir() / "qwen2_5_vl-text";
  const testing::TempDir dir;
  std::filesystem::copy_file(source / "config.json", dir.path() / "config.json");
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::open(source);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  std::vector<TensorToWrite> tensors;
  int renamed = 0;
  for (const std::string& name : (*checkpoint)->tensor_names()) {
    const TensorInfo* info = (*checkpoint)->find(name);
    std::string new_name = name;
    if (name.starts_with("model.")) {
      new_name = "model.language_model." + name.substr(6);
      ++renamed;
    } else if (name.starts_with("visual.")) {
      new_name = "model." + name;
    }
    tensors.push_back(TensorToWrite{new_name, info->dtype, info->shape, info->data});
  }
  EXPECT_GT(renamed, 10);
  ASSERT_TRUE(write_safetensors(dir.path() / "model.safetensors", tensors).ok());
  std::unique_ptr<CausalLM> hub = load("qwen2_5_vl-text", DType::kF32, 64, "f32");
  LoadOptions options;
  options.num_threads = 2;
  options.kv_cache_dtype = DType::kF32;
  options.cpu_gemm_path = "f32";  // compared with transformers at the float tolerance
  absl::StatusOr<std::unique_ptr<CausalLM>> prefixed = load_causal_lm(dir.path(), options);
  ASSERT_TRUE(prefixed.ok()) << prefixed.status();
  ASSERT_NE(hub, nullptr);
  ASSERT_TRUE((*prefixed)->allocate_kv_cache(64).ok());
  const Prompt prompt = read_reference("qwen2_5_vl-text").back();
  SequenceChunk chunk;
  chunk.num_new_tokens = static_cast<int32_t>(prompt.ids.size());
  chunk.wants_logits = true;
  BlockPool(64).cover(chunk.block_table, chunk.num_new_tokens);
  std::vector<float> from_hub, from_prefixed;
  ASSERT_TRUE(hub->forward(ForwardBatch{prompt.ids, {chunk}}, from_hub).ok());
  ASSERT_TRUE((*prefixed)->forward(ForwardBatch{prompt.ids, {chunk}}, from_prefixed).ok());
  EXPECT_EQ(from_hub, from_prefixed);
  EXPECT_LT(max_abs_diff(from_prefixed, prompt.prefill_logits), kLogitTolerance);
}

TEST(DecoderLMForwardTest, RejectsBadBatchesWithASentence) {
  LoadOptions options;
  options.num_threads = 1;
  absl::StatusOr<std::unique_ptr<CausalLM>> lm = load_causal_lm(models_dir() / "qwen2-tied", options);
  ASSERT_TRUE(lm.ok()) << lm.status();
  std::vector<float> logits;
  const SequenceChunk one{0, 1, {0}, true};
  EXPECT_TRUE(absl::IsFailedPrecondition((*lm)->forward(ForwardBatch{{5}, {one}}, logits)));
  ASSERT_TRUE((*lm)->allocate_kv_cache(4).ok());
  auto error = [&](const ForwardBatch& batch) { return std::string((*lm)->forward(batch, logits).message()); };
  EXPECT_THAT(error(ForwardBatch{{512}, {one}}), ::testing::HasSubstr("token id 512"));
  EXPECT_THAT(error(ForwardBatch{{-1}, {one}}), ::testing::HasSubstr("token id -1"));
  EXPECT_THAT(error(ForwardBatch{{5, 6}, {one}}), ::testing::HasSubstr("add up"));
  EXPECT_THAT(error(ForwardBatch{{5}, {SequenceChunk{0, 1, {4}, true}}}), ::testing::HasSubstr("KV block 4"));
  EXPECT_THAT(error(ForwardBatch{{5}, {SequenceChunk{16, 1, {0}, true}}}), ::testing::HasSubstr("needs 2 KV blocks"));
  EXPECT_THAT(error(ForwardBatch{{}, {SequenceChunk{0, 0, {0}, true}}}), ::testing::HasSubstr("new token"));
  EXPECT_THAT(error(ForwardBatch{{5}, {SequenceChunk{4096, 1, {0, 1, 2}, true}}}),
              ::testing::HasSubstr("max_position_embeddings"));
  EXPECT_THAT(error(ForwardBatch{}), ::testing::HasSubstr("no sequences"));
  EXPECT_TRUE(absl::IsInvalidArgument((*lm)->allocate_kv_cache(0)));
  // After all that, a good batch still works.
  EXPECT_TRUE((*lm)->forward(ForwardBatch{{5}, {one}}, logits).ok());
  EXPECT_EQ(logits.size(), 512u);
}

}  // namespace
}  // namespace bm::engine
