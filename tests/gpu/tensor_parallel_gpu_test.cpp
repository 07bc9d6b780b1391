// Tensor parallelism across GPUs over NCCL (docs/tensor-parallel.md), on a machine with two or more GPUs:
//   - the NCCL communicators from the plugin (create_cuda_communicators) and CudaBackend::all_reduce_sum: every
//     rank gets the exact sum (integer-valued floats, so any summation order is exact), eagerly and replayed from
//     a captured CUDA graph, at sizes from one element to 4 Mi;
//   - a committed tiny checkpoint (tests/data/models) loaded at tensor-parallel size 2 on GPUs 0 and 1 against
//     size 1 on GPU 0: prefill and greedy decode logits, then the same decode with step graphs (NCCL captured).
// Where fewer than two GPUs are visible every test skips with a sentence: without any GPU as every test in
// tests/gpu does (BM_GPU_SKIP_OR_FAIL: a failure where a GPU is required), with one GPU always (a single-GPU
// machine cannot run these; run-gpu-checks.sh runs this binary only where it sees two).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/communicator.h"
#include "engine/backend/cuda_plugin.h"
#include "engine/models/causal_lm.h"
#include "engine/models/model_loader.h"
#include "nlohmann/json.hpp"
#include "tests/gpu/gpu_required.h"

namespace bm::engine {
namespace {

// Skips (with the reason) unless GPUs 0 and 1 can each hold a CUDA backend.
#define BM_REQUIRE_TWO_GPUS()                                                                                  \
  do {                                                                                                         \
    auto first = create_cuda_backend(0);                                                                       \
    if (!first.ok()) BM_GPU_SKIP_OR_FAIL(std::string(first.status().message()));                               \
    auto second = create_cuda_backend(1);                                                                      \
    if (!second.ok() && is_backend_unavailable(second.status()))                                               \
      GTEST_SKIP() << "tensor parallelism across GPUs needs two GPUs, and only one is usable here ("         \
                   << second.status().message() << ")";                                                      \
    ASSERT_TRUE(second.ok()) << second.status();                                                               \
  } while (0)

std::filesystem::path checkpoint(const std::string& name) {
  const char* source = std::getenv("BMSERVER_SOURCE_DIR");
  return std::filesystem::path(source != nullptr ? source : ".") / "tests/data/models" / name;
}

// body(rank) on one thread per rank, all at once (NCCL collectives block until every rank has joined).
void on_every_rank(int32_t size, const std::function<void(int32_t)>& body) {
  std::vector<std::thread> threads;
  for (int32_t r = 0; r < size; ++r) threads.emplace_back(body, r);
  for (auto& t : threads) t.join();
}

TEST(NcclAllReduce, EveryRankGetsTheExactSumEagerAndFromAGraph) {
  BM_REQUIRE_TWO_GPUS();
  const std::vector<int32_t> devices = {0, 1};
  auto group = create_cuda_communicators(devices);
  ASSERT_TRUE(group.ok()) << group.status();
  ASSERT_EQ(group->size(), 2u);
  std::vector<std::unique_ptr<Backend>> backends;
  for (int32_t d : devices) {
    auto backend = create_cuda_backend(d);
    ASSERT_TRUE(backend.ok()) << backend.status();
    ASSERT_TRUE((*backend)->runs_collectives(*(*group)[backends.size()]));
    backends.push_back(*std::move(backend));
  }
  EXPECT_FALSE(backends[0]->runs_collectives(*(*group)[1])) << "rank 1 lives on GPU 1, not on backend 0's GPU";
  EXPECT_EQ((*group)[0]->kind(), "nccl");
  EXPECT_EQ((*group)[1]->rank(), 1);
  for (const int64_t elements : {int64_t{1}, int64_t{896}, int64_t{7} * 3584, int64_t{4} << 20}) {
    const int64_t cols = std::min<int64_t>(elements, 896);
    const int64_t rows = elements / cols;
    // Rank r holds (i % 1000) * (r + 1): integers below 2^24 whose sums are exact in F32 in any order.
    auto value = [](int64_t i, int32_t r) { return static_cast<float>((i % 1000) * (r + 1)); };
    std::vector<std::vector<float>> eager(2), replayed(2);
    std::vector<std::string> failures(2);
    on_every_rank(2, [&](int32_t r) {
      Backend& b = *backends[static_cast<size_t>(r)];
      Communicator& comm = *(*group)[static_cast<size_t>(r)];
      auto buffer = b.allocate(rows * cols * 4);
      if (!buffer.ok()) {
        failures[r] = std::string(buffer.status().message());
        return;
      }
      const Tensor x{buffer->get(), 0, DType::kF32, rows, cols};
      std::vector<float> host(static_cast<size_t>(rows * cols));
      for (int64_t i = 0; i < rows * cols; ++i) host[static_cast<size_t>(i)] = value(i, r);
      b.copy_to_device(std::as_bytes(std::span(host)), x);
      b.all_reduce_sum(x, comm);
      eager[r].resize(host.size());
      b.copy_to_host(x, std::as_writable_bytes(std::span(eager[r])));
      // The same all-reduce recorded into a graph and replayed: NCCL under stream capture.
      b.copy_to_device(std::as_bytes(std::span(host)), x);
      b.synchronize();
      if (absl::Status s = b.begin_capture(); !s.ok()) {
        failures[r] = std::string(s.message());
        return;
      }
      b.all_reduce_sum(x, comm);
      auto graph = b.end_capture();
      if (!graph.ok()) {
        failures[r] = std::string(graph.status().message());
        return;
      }
      b.replay(**graph);
      replayed[r].resize(host.size());
      b.copy_to_host(x, std::as_writable_bytes(std::span(replayed[r])));
      if (absl::Status s = b.device_status(); !s.ok()) failures[r] = std::string(s.message());
    });
    for (int32_t r = 0; r < 2; ++r) {
      ASSERT_TRUE(failures[r].empty()) << "rank " << r << ": " << failures[r];
      int64_t wrong_eager = 0, wrong_replayed = 0;
      for (int64_t i = 0; i < rows * cols; ++i) {
        const float sum = value(i, 0) + value(i, 1);
        wrong_eager += eager[r][static_cast<size_t>(i)] != sum;
        wrong_replayed += replayed[r][static_cast<size_t>(i)] != sum;
      }
      EXPECT_EQ(wrong_eager, 0) << "rank " << r << ", " << elements << " elements, eager";
      EXPECT_EQ(wrong_replayed, 0) << "rank " << r << ", " << elements << " elements, from a graph";
    }
  }
}

TEST(NcclAllReduce, TheSameGpuTwiceIsRefusedWithASentence) {
  BM_REQUIRE_TWO_GPUS();
  const std::vector<int32_t> twice = {1, 1};
  auto group = create_cuda_communicators(twice);
  ASSERT_FALSE(group.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(group.status())) << group.status();
  EXPECT_NE(std::string(group.status().message()).find("distinct GPUs"), std::string::npos) << group.status();
}

SequenceChunk chunk(int32_t cached, int32_t fresh) {
  SequenceChunk c;
  c.num_cached_tokens = cached;
  c.num_new_tokens = fresh;
  for (int32_t b = 0; b < (cached + fresh + kBlockSize - 1) / kBlockSize; ++b) c.block_table.push_back(b);
  c.wants_logits = true;
  return c;
}

// ||a - b||₂ / ||b||₂.
double normalised_error(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double error = 0, norm = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    error += (double{a[i]} - b[i]) * (double{a[i]} - b[i]);
    norm += double{b[i]} * b[i];
  }
  return norm > 0 ? std::sqrt(error / norm) : std::sqrt(error);
}

absl::StatusOr<std::unique_ptr<CausalLM>> load_on_gpus(const std::string& name, std::vector<int32_t> devices) {
  LoadOptions options;
  options.backend = "cuda";
  options.tensor_parallel_size = static_cast<int32_t>(devices.size());
  options.device_index = devices[0];
  if (devices.size() > 1) options.devices = std::move(devices);
  auto model = load_causal_lm(checkpoint(name), options);
  if (model.ok())
    if (absl::Status s = (*model)->allocate_kv_cache(32); !s.ok()) return s;
  return model;
}

// Tolerance: both sides run the same kernels in BF16 (linear() rounds activations to BF16, the KV cache is BF16);
// only the row-parallel sums are split in two and added by NCCL, and a last-bit difference there can move a later
// BF16 rounding. The CUDA backend's own tolerance against the CPU is 1e-2 (cuda_backend_test.cpp); the same bound.
constexpr double kTolerance = 1e-2;

class TensorParallelOnGpus : public ::testing::TestWithParam<std::string> {};

TEST_P(TensorParallelOnGpus, TwoGpusGiveTheLogitsOfOne) {
  BM_REQUIRE_TWO_GPUS();
  const std::string name = GetParam();
  auto one = load_on_gpus(name, {0});
  ASSERT_TRUE(one.ok()) << one.status();
  auto two = load_on_gpus(name, {0, 1});
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ((*two)->info().tensor_parallel_size, 2);
  std::ifstream in(checkpoint(name) / "reference.json");
  ASSERT_TRUE(in.good()) << "no reference.json in " << checkpoint(name);
  const nlohmann::json reference = nlohmann::json::parse(in);
  double worst = 0;
  for (const bool graphs : {false, true}) {
    if (graphs) {
      ASSERT_TRUE((*one)->enable_decode_graphs(4).ok());
      ASSERT_TRUE((*two)->enable_decode_graphs(4).ok());
    }
    for (const auto& prompt : reference.at("prompts")) {
      std::vector<int32_t> ids = prompt.at("ids").get<std::vector<int32_t>>();
      std::vector<float> a, b;
      ASSERT_TRUE((*one)->forward(ForwardBatch{ids, {chunk(0, static_cast<int32_t>(ids.size()))}}, a).ok());
      ASSERT_TRUE((*two)->forward(ForwardBatch{ids, {chunk(0, static_cast<int32_t>(ids.size()))}}, b).ok());
      worst = std::max(worst, normalised_error(b, a));
      // Both follow size 1's greedy choice, so a near tie cannot send them down different sequences.
      for (int step = 0; step < 8; ++step) {
        const int32_t token = static_cast<int32_t>(std::max_element(a.begin(), a.end()) - a.begin());
        const int32_t cached = static_cast<int32_t>(ids.size());
        ids.push_back(token);
        ASSERT_TRUE((*one)->forward(ForwardBatch{{token}, {chunk(cached, 1)}}, a).ok());
        auto stepped = (*two)->forward(ForwardBatch{{token}, {chunk(cached, 1)}}, b);
        ASSERT_TRUE(stepped.ok()) << stepped;
        worst = std::max(worst, normalised_error(b, a));
      }
    }
    if (graphs) {
      const DecodeGraphStats stats = (*two)->decode_graph_stats();
      EXPECT_TRUE(stats.disabled.empty()) << "graphs were turned off: " << stats.disabled;
      EXPECT_GT(stats.replayed, 0) << "no decode step replayed a graph with the all-reduces in it";
    }
  }
  EXPECT_LT(worst, kTolerance);
  std::printf("[ figures ] %s on 2 GPUs against 1: worst normalised logit error %.3g (bound %.0e)\n", name.c_str(),
              worst, kTolerance);
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, TensorParallelOnGpus,
                         ::testing::Values("qwen2-tied", "qwen2-untied-sharded", "llama3"));

}  // namespace
}  // namespace bm::engine
