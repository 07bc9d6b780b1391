// Tensor parallelism over CPU ranks against the unsharded model (docs/tensor-parallel.md): every committed float
// checkpoint split over 2 and 4 ranks — KV heads split, and replicated where the ranks outnumber them — gives the
// one-rank logits within float reduction-order noise and transformers' greedy tokens; a Qwen2.5-VL prompt with an
// image too; sizes that do not fit the model are refused before anything loads. The collectives are checked alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "engine/backend/cpu/cpu_communicator.h"
#include "engine/backend/cuda_plugin.h"
#include "engine/models/causal_lm.h"
#include "engine/models/model_loader.h"
#include "engine/models/tensor_parallel_lm.h"
#include "nlohmann/json.hpp"
#include "tests/unit/engine/models/forward_chunk.h"
#include "tests/unit/engine/models/media_fixture.h"
#include "tests/unit/engine/models/random_checkpoint.h"

namespace bm::engine {
namespace {

std::filesystem::path checkpoint(const std::string& name) {
  const char* source = std::getenv("BMSERVER_SOURCE_DIR");
  return std::filesystem::path(source != nullptr ? source : ".") / "tests/data/models" / name;
}

absl::StatusOr<std::unique_ptr<CausalLM>> load(const std::string& name, int32_t tp) {
  LoadOptions options;
  options.num_threads = std::max(2, tp);
  options.kv_cache_dtype = DType::kF32;
  options.cpu_gemm_path = "f32";  // the reference numerics: compared with transformers and one rank at 1e-3
  options.tensor_parallel_size = tp;
  auto model = load_causal_lm(checkpoint(name), options);
  if (model.ok()) {
    EXPECT_TRUE((*model)->allocate_kv_cache(32).ok());
  }
  return model;
}

using testing::forward_chunk;

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::abs(double{a[i]} - double{b[i]}));
  return d;
}

struct Case {
  std::string model;
  int32_t tp;
  int32_t kv_heads;  // the checkpoint's
};

class TensorParallelTest : public ::testing::TestWithParam<Case> {};

// The model on one rank and on c.tp ranks; each rank of the split holds its share of the KV heads, at least one.
void load_one_and_split(const Case& c, std::unique_ptr<CausalLM>& one, std::unique_ptr<CausalLM>& many) {
  auto whole = load(c.model, 1);
  auto split = load(c.model, c.tp);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_TRUE(split.ok()) << split.status();
  one = *std::move(whole);
  many = *std::move(split);
  EXPECT_EQ(many->info().tensor_parallel_size, c.tp);
  EXPECT_EQ(many->info().kv_bytes_per_token, one->info().kv_bytes_per_token / std::min(c.tp, c.kv_heads));
}

// Prefill and the greedy steps of each reference prompt, the rank group against one rank: the same greedy token at
// every step (and, with match_reference, transformers' recorded one) and logits within float summation-order
// noise — the row-parallel partial sums are added in another order; for act-order, a rank's groups are repacked
// into smaller packed groups.
void expect_matches_one_rank(CausalLM& one, CausalLM& many, const std::filesystem::path& dir, const std::string& what,
                             bool match_reference) {
  std::ifstream in(dir / "reference.json");
  const nlohmann::json reference = nlohmann::json::parse(in);
  double worst = 0;
  for (const auto& prompt : reference.at("prompts")) {
    std::vector<int32_t> ids = prompt.at("ids").get<std::vector<int32_t>>();
    const auto greedy = prompt.at("greedy_ids").get<std::vector<int32_t>>();
    std::vector<float> a, b;
    ASSERT_TRUE(one.forward(ForwardBatch{ids, {forward_chunk(0, static_cast<int32_t>(ids.size()))}}, a).ok());
    ASSERT_TRUE(many.forward(ForwardBatch{ids, {forward_chunk(0, static_cast<int32_t>(ids.size()))}}, b).ok());
    for (size_t step = 0; step < greedy.size(); ++step) {
      worst = std::max(worst, max_abs_diff(a, b));
      const int32_t token = static_cast<int32_t>(std::max_element(a.begin(), a.end()) - a.begin());
      ASSERT_EQ(static_cast<int32_t>(std::max_element(b.begin(), b.end()) - b.begin()), token) << "step " << step;
      if (match_reference) {
        ASSERT_EQ(token, greedy[step]) << "step " << step;
      }
      const int32_t cached = static_cast<int32_t>(ids.size());
      ids.push_back(token);
      ASSERT_TRUE(one.forward(ForwardBatch{{token}, {forward_chunk(cached, 1)}}, a).ok());
      ASSERT_TRUE(many.forward(ForwardBatch{{token}, {forward_chunk(cached, 1)}}, b).ok());
    }
    worst = std::max(worst, max_abs_diff(a, b));
  }
  EXPECT_LT(worst, 1e-4);
  std::printf("[ figures ] %s: max |dlogit| against one rank %.3g\n", what.c_str(), worst);
}

TEST_P(TensorParallelTest, LogitsAndGreedyTokensMatchOneRank) {
  const Case& c = GetParam();
  std::unique_ptr<CausalLM> one, many;
  ASSERT_NO_FATAL_FAILURE(load_one_and_split(c, one, many));
  expect_matches_one_rank(*one, *many, checkpoint(c.model), c.model + " at tp " + std::to_string(c.tp),
                          /*match_reference=*/true);
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, TensorParallelTest,
                         ::testing::Values(Case{"qwen2-tied", 2, 2}, Case{"qwen2-tied", 4, 2},
                                           Case{"qwen2-untied-sharded", 2, 2}, Case{"qwen2-untied-sharded", 4, 2},
                                           Case{"llama3", 2, 1}, Case{"llama3", 4, 1}, Case{"qwen2_5_vl-text", 2, 2}),
                         [](const auto& info) {
                           std::string name = info.param.model + "_tp" + std::to_string(info.param.tp);
                           for (char& ch : name) ch = ch == '-' ? '_' : ch;
                           return name;
                         });

TEST(TensorParallel, AnImagePromptOnTwoRanksMatchesTransformers) {
  auto model = load("qwen2_5_vl-text", 2);
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_TRUE((*model)->media_support().ok()) << (*model)->media_support();
  const media_fixture::MediaCase c = media_fixture::read_cases()[1];  // two images
  auto media = (*model)->prepare_media(c.ids, &c.media);
  ASSERT_TRUE(media.ok()) << media.status();
  for (size_t i = 0; i < c.media.items.size(); ++i) {
    auto e = (*model)->encode_media(std::vector<const MediaItem*>{&c.media.items[i]});
    ASSERT_TRUE(e.ok()) << e.status();
    (*media)->items[i].embeddings = std::make_shared<const std::vector<float>>(std::move((*e)[0]));
  }
  std::vector<float> logits;
  ASSERT_TRUE(
      (*model)
          ->forward(ForwardBatch{c.ids, {forward_chunk(0, static_cast<int32_t>(c.ids.size()), media->get())}}, logits)
          .ok());
  EXPECT_LT(max_abs_diff(logits, c.prefill_logits), 1e-3);
}

TEST(TensorParallel, SizesThatDoNotFitAreRefusedWithASentence) {
  auto three = load("qwen2-tied", 3);  // 4 heads
  ASSERT_FALSE(three.ok());
  EXPECT_NE(std::string(three.status().message()).find("attention heads"), std::string::npos) << three.status();
  LoadOptions on_gpu;
  on_gpu.backend = "cuda";
  on_gpu.tensor_parallel_size = 2;
  on_gpu.devices = {0, 1, 2};
  auto mismatch = load_causal_lm(checkpoint("qwen2-tied"), on_gpu);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(mismatch.status())) << mismatch.status();
  EXPECT_NE(std::string(mismatch.status().message()).find("needs one GPU per rank, but 3 GPUs were given"),
            std::string::npos)
      << mismatch.status();
}

// ---- GPTQ / AWQ layers split over the ranks (docs/quantization.md, "Tensor parallelism")

class QuantizedTensorParallelTest : public ::testing::TestWithParam<Case> {};

TEST_P(QuantizedTensorParallelTest, LogitsAndGreedyTokensMatchOneRank) {
  const Case& c = GetParam();
  std::unique_ptr<CausalLM> one, many;
  ASSERT_NO_FATAL_FAILURE(load_one_and_split(c, one, many));
  // The quantized references' greedy tokens come from float32 transformers; one rank's own (bf16 activations on an
  // avx512-bf16 CPU) is what the split must reproduce.
  expect_matches_one_rank(*one, *many, checkpoint(c.model), c.model + " at tp " + std::to_string(c.tp),
                          /*match_reference=*/false);
  // What splitting costs in memory: the replicated embedding and norms, and act-order's padded packed groups.
  std::printf("[ figures ] %s at tp %d: weights over all ranks %lld bytes, one rank alone %lld\n", c.model.c_str(),
              c.tp, static_cast<long long>(many->info().weight_bytes),
              static_cast<long long>(one->info().weight_bytes));
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, QuantizedTensorParallelTest,
                         ::testing::Values(Case{"qwen2-gptq-int4", 2, 2}, Case{"qwen2-gptq-int4", 4, 2},
                                           Case{"qwen2-gptq-int4-act", 2, 2}, Case{"qwen2-gptq-int4-act", 4, 2},
                                           Case{"qwen2-gptq-int8", 2, 2}, Case{"qwen2-gptq-int8", 4, 2},
                                           Case{"qwen2-gptq-int8-act", 2, 2}, Case{"qwen2-gptq-int8-act", 4, 2},
                                           Case{"qwen2-awq", 2, 2}, Case{"qwen2-awq", 4, 2},
                                           Case{"llama3-gptq-int4-act", 2, 2}, Case{"llama3-gptq-int4-act", 4, 2},
                                           Case{"llama3-awq", 2, 2},
                                           Case{"llama3-awq", 4, 2}),
                         [](const auto& info) {
                           std::string name = info.param.model + "_tp" + std::to_string(info.param.tp);
                           for (char& ch : name) ch = ch == '-' ? '_' : ch;
                           return name;
                         });

// group_size 64 over o_proj's 64 inputs: one group, which two ranks cannot share without act-order — one sentence
// naming the layer, before anything is allocated. With act-order (two groups of 64, their inputs shuffled over
// the 128 inputs) four ranks of 32 inputs split them anyway: each rank's pieces of the groups are repacked and
// padded, and the logits match one rank.
TEST(QuantizedTensorParallel, GroupsThatCannotSplitAreOneSentenceAndActOrderSplitsAnyway) {
  const std::filesystem::path root = std::filesystem::path(::testing::TempDir()) / "tp_quantized_groups";
  std::filesystem::remove_all(root);
  testing::RandomCheckpointShape shape;
  shape.quantization = "gptq-int4";
  shape.group_size = 64;
  ASSERT_TRUE(testing::write_random_checkpoint(root / "plain", shape));
  shape.hidden_size = 128;
  shape.desc_act = true;
  ASSERT_TRUE(testing::write_random_checkpoint(root / "act", shape));
  LoadOptions options;
  options.num_threads = 4;  // one per rank at most (as load() above)
  options.kv_cache_dtype = DType::kF32;
  options.cpu_gemm_path = "f32";
  options.tensor_parallel_size = 2;
  auto plain = load_causal_lm(root / "plain", options);
  ASSERT_FALSE(plain.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(plain.status())) << plain.status();
  EXPECT_EQ(std::string(plain.status().message()),
            "layer 'model.layers.0.self_attn.o_proj' cannot be split over 2 tensor-parallel ranks: a rank's 32 inputs "
            "are not whole groups of 64 (the layer's 64 inputs form 1 group); serve this model with a "
            "tensor-parallel size that splits them evenly");
  options.tensor_parallel_size = 4;
  auto act = load_causal_lm(root / "act", options);
  ASSERT_TRUE(act.ok()) << act.status();
  options.tensor_parallel_size = 1;
  options.num_threads = 2;
  auto one = load_causal_lm(root / "act", options);
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_TRUE((*act)->allocate_kv_cache(8).ok());
  ASSERT_TRUE((*one)->allocate_kv_cache(8).ok());
  std::vector<float> a, b;
  const std::vector<int32_t> ids = {3, 141, 59, 26, 53, 58, 97, 93, 238};
  ASSERT_TRUE((*one)->forward(ForwardBatch{ids, {forward_chunk(0, static_cast<int32_t>(ids.size()))}}, a).ok());
  ASSERT_TRUE((*act)->forward(ForwardBatch{ids, {forward_chunk(0, static_cast<int32_t>(ids.size()))}}, b).ok());
  EXPECT_LT(max_abs_diff(a, b), 1e-4);
  EXPECT_EQ(std::max_element(a.begin(), a.end()) - a.begin(), std::max_element(b.begin(), b.end()) - b.begin());
  std::printf("[ figures ] act-order g64 split over 4 ranks: max |dlogit| against one rank %.3g\n",
              max_abs_diff(a, b));
  std::filesystem::remove_all(root);
}

// The CUDA backend runs tensor parallelism over NCCL now. Where it cannot (no plugin, no driver, fewer than two
// GPUs, no libnccl) the refusal is the backend being unavailable, with a sentence naming CUDA or NCCL; where two
// GPUs and NCCL are present it loads (the logits are compared in tests/gpu/tensor_parallel_gpu_test.cpp).
TEST(TensorParallel, TheCudaBackendLoadsOnTwoGpusOrSaysWhyItCannot) {
  LoadOptions on_gpu;
  on_gpu.backend = "cuda";
  on_gpu.tensor_parallel_size = 2;
  auto cuda = load_causal_lm(checkpoint("qwen2-tied"), on_gpu);
  if (cuda.ok()) {
    EXPECT_EQ((*cuda)->info().tensor_parallel_size, 2);
    return;
  }
  const std::string message(cuda.status().message());
  EXPECT_TRUE(is_backend_unavailable(cuda.status()) || absl::IsInvalidArgument(cuda.status())) << cuda.status();
  EXPECT_TRUE(message.find("CUDA") != std::string::npos || message.find("NCCL") != std::string::npos ||
              message.find("GPU") != std::string::npos)
      << message;
  EXPECT_GT(message.size(), 20u) << "a sentence, not a code";
  std::printf("[ refusal ] %s\n", message.c_str());
}

// ---- a rank that fails outside a collective

// Rank 1 (a follower thread) or rank 0 (the caller's thread) fails before the step's first all-reduce while its
// peers wait in it: nobody hangs, the step returns one error — the aborted group, a device fault to the engine,
// naming the rank and its failure — and the group stays failed.
TEST(TensorParallel, ARankFailingBeforeACollectiveAbortsTheGroupInsteadOfHanging) {
  for (const auto& [tp, failing] : std::vector<std::pair<int32_t, int32_t>>{{2, 1}, {4, 0}, {4, 3}}) {
    SCOPED_TRACE(::testing::Message() << "tp " << tp << " failing rank " << failing);
    auto model = load("qwen2-tied", tp);
    ASSERT_TRUE(model.ok()) << model.status();
    auto* group = dynamic_cast<TensorParallelLM*>(model->get());
    ASSERT_NE(group, nullptr);
    const std::vector<int32_t> ids = {97, 11, 187, 0};
    std::vector<float> logits;
    ASSERT_TRUE((*model)->forward(ForwardBatch{ids, {forward_chunk(0, 4)}}, logits).ok());
    group->fail_next_step_on_rank(failing, absl::ResourceExhaustedError("the CPU backend cannot allocate 64 bytes"));
    const absl::Status failed = (*model)->forward(ForwardBatch{{1}, {forward_chunk(4, 1)}}, logits);
    EXPECT_TRUE(absl::IsInternal(failed)) << failed;
    EXPECT_EQ(std::string(failed.message()), "the tensor-parallel group was aborted: rank " + std::to_string(failing) +
                                                 " of " + std::to_string(tp) +
                                                 " failed: the CPU backend cannot allocate 64 bytes");
    const absl::Status after = (*model)->forward(ForwardBatch{{1}, {forward_chunk(4, 1)}}, logits);
    EXPECT_TRUE(absl::IsInternal(after)) << after;
  }
}

// ---- the collectives alone

// Every rank of a group runs body(rank) on its own thread.
void on_ranks(int32_t size, const std::function<void(cpu::CpuCommunicator&)>& body) {
  auto group = cpu::CpuCommunicator::create_group(size);
  std::vector<std::thread> threads;
  for (auto& comm : group) threads.emplace_back([&body, c = comm.get()] { body(*c); });
  for (auto& t : threads) t.join();
}

TEST(CpuCommunicator, AllReduceSumsInRankOrderAndEveryRankGetsTheSameBits) {
  for (int32_t size : {1, 2, 3, 4}) {
    for (int64_t count : {int64_t{1}, int64_t{5}, int64_t{1000}}) {
      std::vector<std::vector<float>> data(static_cast<size_t>(size));
      std::mt19937 rng(static_cast<uint32_t>(size * 1000 + count));
      std::normal_distribution<float> normal(0.0f, 1e3f);
      for (auto& d : data) {
        d.resize(static_cast<size_t>(count));
        for (float& v : d) v = normal(rng);
      }
      std::vector<float> expected(static_cast<size_t>(count), 0.0f);
      for (const auto& d : data)
        for (int64_t i = 0; i < count; ++i) expected[static_cast<size_t>(i)] += d[static_cast<size_t>(i)];
      for (int repeat = 0; repeat < 3; ++repeat) {
        auto work = data;
        on_ranks(size, [&](cpu::CpuCommunicator& c) { c.all_reduce_sum(work[c.rank()].data(), count); });
        for (const auto& w : work) EXPECT_EQ(w, expected) << "size " << size << " count " << count;
      }
    }
  }
}

// Ranks waiting in an all-reduce return false once a peer aborts instead of joining; so does every later
// collective of the group, on any rank.
TEST(CpuCommunicator, AbortWakesTheRanksWaitingInACollective) {
  for (int32_t size : {2, 3, 4}) {
    std::vector<int> returned(static_cast<size_t>(size), -1);
    std::vector<std::vector<float>> data(static_cast<size_t>(size), std::vector<float>(100, 1.0f));
    on_ranks(size, [&](cpu::CpuCommunicator& c) {
      if (c.rank() == size - 1) {
        // Usually after the others are asleep in the all-reduce (either way they must return false).
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        c.abort("rank " + std::to_string(c.rank()) + " ran out of memory");
        returned[c.rank()] = c.barrier();
        return;
      }
      returned[c.rank()] = c.all_reduce_sum(data[c.rank()].data(), 100);
      EXPECT_FALSE(c.all_gather(data[c.rank()].data(), data[c.rank()].data(), 0));
      EXPECT_FALSE(c.broadcast(data[c.rank()].data(), 1, 0));
    });
    for (int r : returned) EXPECT_EQ(r, 0) << "size " << size;
    auto group = cpu::CpuCommunicator::create_group(size);
    group[1]->abort("first");
    group[0]->abort("second");
    EXPECT_EQ(group[size - 1]->abort_reason(), "rank 1 of " + std::to_string(size) + " failed: first");
  }
}

TEST(CpuCommunicator, AllGatherAndBroadcast) {
  constexpr int32_t kSize = 3;
  constexpr int64_t kCount = 4;
  std::vector<std::vector<float>> in(kSize), out(kSize, std::vector<float>(kSize * kCount)), bcast(kSize);
  for (int32_t r = 0; r < kSize; ++r) {
    for (int64_t i = 0; i < kCount; ++i) in[r].push_back(static_cast<float>(r * 10 + i));
    bcast[r] = in[r];
  }
  on_ranks(kSize, [&](cpu::CpuCommunicator& c) {
    c.all_gather(in[c.rank()].data(), out[c.rank()].data(), kCount);
    c.broadcast(bcast[c.rank()].data(), kCount, /*root=*/2);
    c.barrier();
  });
  for (int32_t r = 0; r < kSize; ++r) {
    for (int32_t from = 0; from < kSize; ++from)
      for (int64_t i = 0; i < kCount; ++i) EXPECT_EQ(out[r][from * kCount + i], static_cast<float>(from * 10 + i));
    EXPECT_EQ(bcast[r], in[2]);
  }
}

}  // namespace
}  // namespace bm::engine
