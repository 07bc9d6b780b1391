// The engine end to end on the committed random-weight checkpoints (tests/data/models, made by
// tests/tools/model_make_reference_checkpoints.py): greedy continuations must equal transformers' token for token
// however the scheduler slices the work (batching, chunked prefill, preemption, prefix caching), and the
// sampling, stop and abort paths must behave as documented.
#include "engine/runtime/engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>

#include <nlohmann/json.hpp>

#include "engine/grammar/grammar_request.h"
#include "engine/models/model_loader.h"
#include "engine/models/tensor_parallel_lm.h"
#include "tests/unit/engine/models/media_fixture.h"

namespace bm::engine {
namespace {

// A test model is a checkpoint's name, or "name@tpN": the checkpoint split over N tensor-parallel CPU ranks.
std::string checkpoint_of(const std::string& name) {
  return name.substr(0, name.find('@'));
}
int32_t tensor_parallel_size_of(const std::string& name) {
  const size_t at = name.find("@tp");
  return at == std::string::npos ? 1 : std::stoi(name.substr(at + 3));
}

std::filesystem::path model_dir(const std::string& name) {
  const char* source = std::getenv("BMSERVER_SOURCE_DIR");
  return std::filesystem::path(source != nullptr ? source : ".") / "tests/data/models" / checkpoint_of(name);
}

struct Reference {
  std::vector<int32_t> prompt;
  std::vector<int32_t> greedy;
};

std::vector<Reference> read_reference(const std::string& name) {
  std::ifstream in(model_dir(name) / "reference.json");
  nlohmann::json j = nlohmann::json::parse(in);
  std::vector<Reference> out;
  for (const auto& p : j.at("prompts"))
    out.push_back({p.at("ids").get<std::vector<int32_t>>(), p.at("greedy_ids").get<std::vector<int32_t>>()});
  return out;
}

// Collects one request's outputs; wait() returns when all its samples have finished.
class Collector {
 public:
  explicit Collector(int32_t n = 1) : tokens_(n), finish_(n), cached_(n, -1), remaining_(n) {}
  OutputCallback callback() {
    return [this](SequenceOutput out) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto& tokens = tokens_[out.index];
      tokens.insert(tokens.end(), out.new_token_ids.begin(), out.new_token_ids.end());
      logprobs_.insert(logprobs_.end(), out.logprobs.begin(), out.logprobs.end());
      if (cached_[out.index] < 0) cached_[out.index] = out.num_cached_prompt_tokens;
      if (out.finish) {
        finish_[out.index] = *out.finish;
        error_ = out.error;
        if (--remaining_ == 0) cv_.notify_all();
      }
      if (on_output_) on_output_(out);
    };
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    ASSERT_TRUE(cv_.wait_for(lock, std::chrono::seconds(60), [&] { return remaining_ == 0; }))
        << "request did not finish";
  }
  std::vector<int32_t> tokens(int32_t i = 0) const { return tokens_[i]; }
  FinishReason finish(int32_t i = 0) const { return *finish_[i]; }
  int32_t cached(int32_t i = 0) const { return cached_[i]; }
  std::string error() const { return error_; }
  const std::vector<TokenLogprob>& logprobs() const { return logprobs_; }
  std::function<void(const SequenceOutput&)> on_output_;

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::vector<int32_t>> tokens_;
  std::vector<std::optional<FinishReason>> finish_;
  std::vector<int32_t> cached_;
  std::vector<TokenLogprob> logprobs_;
  std::string error_;
  int32_t remaining_;
};

SamplingParams greedy(int32_t max_tokens = 16) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;  // transformers' reference continuation does not stop at eos
  return p;
}

// The references are float32 transformers' greedy tokens, so these engines keep an F32 cache unless a test asks
// otherwise (the BF16 default is held to its own tolerance in decoder_lm_test.cpp and sized below), and F32
// activations: the daemon's engines take the GEMM path from $BMSERVER_CPU_GEMM, set here unless the run sets it
// (decoder_lm_test.cpp holds the default bf16 activations to their tolerance).
std::unique_ptr<Engine> load(const std::string& name, EngineOptions options = {}) {
  ::setenv("BMSERVER_CPU_GEMM", "f32", /*overwrite=*/0);
  options.num_threads = 2;
  options.tensor_parallel_size = tensor_parallel_size_of(name);
  options.num_threads = std::max(options.num_threads, options.tensor_parallel_size);
  if (!options.kv_cache_dtype) options.kv_cache_dtype = DType::kF32;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::load(model_dir(name), options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

// All prompts of a model at once; every continuation must be transformers' greedy one.
void expect_greedy_matches(Engine& engine, const std::vector<Reference>& refs) {
  std::vector<std::unique_ptr<Collector>> collectors;
  std::vector<std::unique_ptr<RequestHandle>> handles;
  // The first request's first output holds the engine thread until every request is submitted, so all of them
  // are admitted together however loaded the machine is (the batching and preemption tests depend on it).
  struct Gate {
    std::promise<void> open;
    std::shared_future<void> opened = open.get_future().share();
    bool released = false;
    void release() {
      if (!std::exchange(released, true)) open.set_value();
    }
    ~Gate() { release(); }  // also when an assertion returns early
  } gate;
  for (const Reference& r : refs) {
    collectors.push_back(std::make_unique<Collector>());
    if (collectors.size() == 1)
      collectors[0]->on_output_ = [opened = gate.opened, first = true](const SequenceOutput&) mutable {
        if (std::exchange(first, false)) opened.wait();
      };
    auto handle = engine.submit(r.prompt, greedy(), collectors.back()->callback());
    ASSERT_TRUE(handle.ok()) << handle.status();
    handles.push_back(*std::move(handle));
  }
  gate.release();
  for (size_t i = 0; i < refs.size(); ++i) {
    collectors[i]->wait();
    EXPECT_EQ(collectors[i]->tokens(), refs[i].greedy) << "prompt " << i << " (" << refs[i].prompt.size() << " tokens)";
    EXPECT_EQ(collectors[i]->finish(), FinishReason::kLength);
  }
}

class GreedyMatchesTransformers : public ::testing::TestWithParam<std::string> {};

TEST_P(GreedyMatchesTransformers, BatchedTogether) {
  auto engine = load(GetParam());
  ASSERT_NE(engine, nullptr);
  expect_greedy_matches(*engine, read_reference(GetParam()));
  EXPECT_EQ(engine->stats().num_running, 0);
}

TEST_P(GreedyMatchesTransformers, WithChunkedPrefill) {
  EngineOptions options;
  options.max_num_batched_tokens = 1;  // raised to max_num_seqs: chunks of 4 tokens
  options.max_num_seqs = 4;
  auto engine = load(GetParam(), options);
  ASSERT_NE(engine, nullptr);
  expect_greedy_matches(*engine, read_reference(GetParam()));
}

TEST_P(GreedyMatchesTransformers, WithPreemptionWhenTheCacheIsTiny) {
  auto engine_for_size = load(GetParam());
  ASSERT_NE(engine_for_size, nullptr);
  const int64_t kv_per_token = engine_for_size->model_info().kv_bytes_per_token;
  engine_for_size.reset();
  EngineOptions options;
  options.kv_cache_bytes = kv_per_token * kBlockSize * 4;  // 64 tokens: the longest request (53) fits alone
  auto engine = load(GetParam(), options);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->stats().kv_capacity_tokens, 64);
  EXPECT_EQ(engine->max_model_len(), 64);
  expect_greedy_matches(*engine, read_reference(GetParam()));
  EXPECT_GT(engine->stats().num_preemptions, 0);
  EXPECT_EQ(engine->stats().num_kv_blocks_in_use, 0);
}

// The CPU's default cache is BF16, as vLLM's: the same bytes hold twice the tokens of an F32 cache.
TEST(EngineKvCacheTest, Bf16ByDefaultHoldsTwiceTheTokensOfF32) {
  EngineOptions options;
  options.num_threads = 2;
  options.kv_cache_bytes = int64_t{1} << 20;
  absl::StatusOr<std::unique_ptr<Engine>> bf16 = Engine::load(model_dir("qwen2-tied"), options);
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  options.kv_cache_dtype = DType::kF32;
  absl::StatusOr<std::unique_ptr<Engine>> f32 = Engine::load(model_dir("qwen2-tied"), options);
  ASSERT_TRUE(f32.ok()) << f32.status();
  EXPECT_EQ((*bf16)->model_info().kv_bytes_per_token * 2, (*f32)->model_info().kv_bytes_per_token);
  EXPECT_GT((*f32)->stats().kv_capacity_tokens, 0);
  EXPECT_EQ((*bf16)->stats().kv_capacity_tokens, 2 * (*f32)->stats().kv_capacity_tokens);
}

// Decode steps as recorded graphs (what a GPU engine does by default; forced on here, where the CPU backend
// records and replays them): transformers' tokens still, also when preemption makes the batch shrink and grow.
TEST_P(GreedyMatchesTransformers, WithDecodeGraphs) {
  EngineOptions options;
  options.decode_graphs = DecodeGraphMode::kOn;
  auto engine = load(GetParam(), options);
  ASSERT_NE(engine, nullptr);
  expect_greedy_matches(*engine, read_reference(GetParam()));
  const DecodeGraphStats graphs = engine->stats().decode_graphs;
  EXPECT_GT(graphs.captured, 0);
  EXPECT_GT(graphs.replayed, graphs.eager);
  EXPECT_TRUE(graphs.disabled.empty()) << graphs.disabled;
}

TEST_P(GreedyMatchesTransformers, WithDecodeGraphsAndPreemption) {
  EngineOptions options;
  options.decode_graphs = DecodeGraphMode::kOn;
  auto sizing = load(GetParam());
  ASSERT_NE(sizing, nullptr);
  options.kv_cache_bytes = sizing->model_info().kv_bytes_per_token * kBlockSize * 4;
  sizing.reset();
  auto engine = load(GetParam(), options);
  ASSERT_NE(engine, nullptr);
  expect_greedy_matches(*engine, read_reference(GetParam()));
  EXPECT_GT(engine->stats().num_preemptions, 0);
  EXPECT_GT(engine->stats().decode_graphs.replayed, 0);
  EXPECT_EQ(engine->stats().num_kv_blocks_in_use, 0);
}

// Quantized checkpoints too (tests/tools/model_make_quantized_checkpoints.py): GPTQ int4 act-order, GPTQ int8 and
// AWQ, whose reference greedy tokens are transformers' on the quantizer's own dequantized weights.
INSTANTIATE_TEST_SUITE_P(Models, GreedyMatchesTransformers,
                         ::testing::Values("qwen2-tied", "qwen2-untied-sharded", "llama3", "qwen2-gptq-int4-act",
                                           "qwen2-gptq-int8", "llama3-awq",
                                           // Tensor parallel over CPU ranks: KV heads split (qwen2, 2 of them),
                                           // and replicated (llama3, one KV head; qwen2 at four ranks).
                                           "qwen2-tied@tp2", "qwen2-untied-sharded@tp2", "llama3@tp2",
                                           "qwen2-tied@tp4"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) c = c == '-' || c == '@' ? '_' : c;
                           return name;
                         });

TEST(Engine, ARepeatedPromptReusesCachedBlocksAndGivesTheSameTokens) {
  for (const std::string name : {"qwen2-tied", "qwen2-tied@tp2"}) {  // every rank reuses its share of the blocks
    SCOPED_TRACE(name);
    auto engine = load(name);
    ASSERT_NE(engine, nullptr);
    Reference r = read_reference(name)[3];  // 37 tokens
    Collector first, second;
    auto h1 = engine->submit(r.prompt, greedy(), first.callback());
    ASSERT_TRUE(h1.ok());
    first.wait();
    auto h2 = engine->submit(r.prompt, greedy(), second.callback());
    ASSERT_TRUE(h2.ok());
    second.wait();
    EXPECT_EQ(first.cached(), 0);
    EXPECT_EQ(second.cached(), 32);
    EXPECT_EQ(second.tokens(), r.greedy);
  }
}

TEST(Engine, ParallelSamplesShareThePromptAndASeedIsReproducible) {
  auto engine = load("qwen2-tied");
  ASSERT_NE(engine, nullptr);
  Reference r = read_reference("qwen2-tied")[3];
  SamplingParams p;
  p.n = 3;
  p.seed = 1234;
  p.max_tokens = 12;
  p.ignore_eos = true;
  Collector a(3), b(3);
  auto ha = engine->submit(r.prompt, p, a.callback());
  ASSERT_TRUE(ha.ok());
  a.wait();
  EXPECT_EQ(a.cached(0), 0);
  EXPECT_EQ(a.cached(1), 32);  // the siblings reuse the first sample's prompt blocks
  EXPECT_NE(a.tokens(0), a.tokens(1));
  // Again, now beside other requests: a seeded request's tokens do not depend on its batch.
  Collector noise1, noise2;
  SamplingParams other;
  other.max_tokens = 20;
  auto hn1 = engine->submit(read_reference("qwen2-tied")[1].prompt, other, noise1.callback());
  auto hb = engine->submit(r.prompt, p, b.callback());
  auto hn2 = engine->submit(read_reference("qwen2-tied")[2].prompt, other, noise2.callback());
  ASSERT_TRUE(hb.ok() && hn1.ok() && hn2.ok());
  b.wait();
  noise1.wait();
  noise2.wait();
  for (int32_t i = 0; i < 3; ++i) EXPECT_EQ(a.tokens(i), b.tokens(i)) << "sample " << i;
}

TEST(Engine, StopTokensEosAndMinTokens) {
  auto engine = load("qwen2-tied");
  ASSERT_NE(engine, nullptr);
  Reference r = read_reference("qwen2-tied")[2];  // greedy: 472 446 364 119 449 446 47 406 250 286 176 443 498 2 ...
  SamplingParams stop = greedy();
  stop.stop_token_ids = {449};
  Collector c1;
  auto h1 = engine->submit(r.prompt, stop, c1.callback());
  ASSERT_TRUE(h1.ok());
  c1.wait();
  EXPECT_EQ(c1.tokens(), (std::vector<int32_t>{472, 446, 364, 119, 449}));
  EXPECT_EQ(c1.finish(), FinishReason::kStop);

  SamplingParams eos = greedy();
  eos.ignore_eos = false;  // eos is token 2, the 14th greedy token
  Collector c2;
  auto h2 = engine->submit(r.prompt, eos, c2.callback());
  ASSERT_TRUE(h2.ok());
  c2.wait();
  EXPECT_EQ(c2.tokens().size(), 14u);
  EXPECT_EQ(c2.tokens().back(), 2);
  EXPECT_EQ(c2.finish(), FinishReason::kStop);

  SamplingParams min = stop;
  min.min_tokens = 5;  // 449 masked at position 5: another token is chosen there
  Collector c3;
  auto h3 = engine->submit(r.prompt, min, c3.callback());
  ASSERT_TRUE(h3.ok());
  c3.wait();
  EXPECT_GE(c3.tokens().size(), 6u);
  EXPECT_NE(c3.tokens()[4], 449);
}

TEST(Engine, LogprobsComeWithEveryToken) {
  auto engine = load("llama3");
  ASSERT_NE(engine, nullptr);
  SamplingParams p = greedy(5);
  p.logprobs = 3;
  Collector c;
  auto h = engine->submit(read_reference("llama3")[1].prompt, p, c.callback());
  ASSERT_TRUE(h.ok());
  c.wait();
  ASSERT_EQ(c.logprobs().size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    const TokenLogprob& lp = c.logprobs()[i];
    EXPECT_EQ(lp.token_id, c.tokens()[i]);
    ASSERT_EQ(lp.top.size(), 3u);
    EXPECT_EQ(lp.top[0].first, lp.token_id);  // greedy: the best alternative is the token itself
    EXPECT_FLOAT_EQ(lp.top[0].second, lp.logprob);
    EXPECT_LT(lp.logprob, 0.0f);
    EXPECT_GE(lp.top[0].second, lp.top[1].second);
  }
}

TEST(Engine, AbortEndsTheRequestAndFreesItsBlocks) {
  auto engine = load("qwen2-tied");
  ASSERT_NE(engine, nullptr);
  Collector c;
  std::unique_ptr<RequestHandle> handle;
  std::mutex handle_mutex;
  int outputs = 0;
  c.on_output_ = [&](const SequenceOutput&) {
    std::lock_guard<std::mutex> lock(handle_mutex);
    if (++outputs == 3 && handle) handle->abort();  // from the engine's own thread
  };
  {
    std::lock_guard<std::mutex> lock(handle_mutex);
    auto h = engine->submit(read_reference("qwen2-tied")[3].prompt, greedy(1000), c.callback());
    ASSERT_TRUE(h.ok());
    handle = *std::move(h);
  }
  c.wait();
  EXPECT_EQ(c.finish(), FinishReason::kAbort);
  EXPECT_LT(c.tokens().size(), 1000u);
  for (int i = 0; i < 100 && engine->stats().num_kv_blocks_in_use != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(engine->stats().num_kv_blocks_in_use, 0);
  EXPECT_EQ(engine->stats().num_running, 0);
}

TEST(Engine, DestroyingTheEngineAbortsWhatIsLeft) {
  auto engine = load("qwen2-tied");
  ASSERT_NE(engine, nullptr);
  Collector c;
  auto h = engine->submit(read_reference("qwen2-tied")[3].prompt, greedy(100000 / 2), c.callback());
  ASSERT_TRUE(h.ok());
  engine.reset();
  c.wait();
  EXPECT_EQ(c.finish(), FinishReason::kAbort);
  (*h)->abort();  // harmless after the engine is gone
}

TEST(Engine, BadRequestsAreRefusedWithASentence) {
  auto engine = load("qwen2-tied");
  ASSERT_NE(engine, nullptr);
  auto message = [&](std::vector<int32_t> prompt, SamplingParams p) {
    auto h = engine->submit(std::move(prompt), p, nullptr);
    EXPECT_FALSE(h.ok());
    return h.ok() ? std::string() : std::string(h.status().message());
  };
  EXPECT_NE(message({}, greedy()).find("empty"), std::string::npos);
  EXPECT_NE(message({1, 512}, greedy()).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(message(std::vector<int32_t>(engine->max_model_len(), 1), greedy()).find("context"), std::string::npos);
  SamplingParams p = greedy();
  p.top_p = 2;
  EXPECT_NE(message({1, 2}, p).find("top_p"), std::string::npos);
}

TEST(Engine, OptionsThatCannotWorkAreRefused) {
  EngineOptions too_long;
  too_long.max_model_len = 1 << 30;
  auto e1 = Engine::load(model_dir("qwen2-tied"), too_long);
  ASSERT_FALSE(e1.ok());
  EXPECT_NE(std::string(e1.status().message()).find("max_position_embeddings"), std::string::npos);

  EngineOptions tiny;
  tiny.kv_cache_bytes = 100;
  auto e2 = Engine::load(model_dir("qwen2-tied"), tiny);
  ASSERT_FALSE(e2.ok());
  EXPECT_NE(std::string(e2.status().message()).find("KV cache"), std::string::npos);

  auto e3 = Engine::load(model_dir("does-not-exist"), EngineOptions{});
  ASSERT_FALSE(e3.ok());
}

TEST(Engine, MaxConcurrencyComesFromTheBlocksEachRequestNeeds) {
  auto sized = load("qwen2-tied");
  ASSERT_NE(sized, nullptr);
  EngineOptions options;
  options.kv_cache_bytes = sized->model_info().kv_bytes_per_token * kBlockSize * 100;  // 100 blocks
  options.max_num_seqs = 64;
  sized.reset();
  auto engine = load("qwen2-tied", options);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->max_concurrency(16, 16), 50);  // 2 blocks each
  EXPECT_EQ(engine->max_concurrency(17, 16), 33);  // 3 blocks each
  EXPECT_EQ(engine->max_concurrency(8, 8), 64);    // capped by max_num_seqs
  EXPECT_EQ(engine->max_concurrency(1000, 700), 0);
}

// A model whose device faults on its second step, as a CUDA backend reports a kernel fault.
class FaultingModel final : public CausalLM {
 public:
  FaultingModel() {
    info_.architecture = "Fake";
    info_.vocab_size = 8;
    info_.max_position_embeddings = 256;
    info_.num_layers = 1;
    info_.kv_bytes_per_token = 64;
  }
  const CausalLMInfo& info() const override { return info_; }
  int64_t device_memory_total_bytes() const override { return int64_t{1} << 30; }
  int64_t device_memory_free_bytes() const override { return int64_t{1} << 30; }
  std::string backend_name() const override { return "fake"; }
  absl::Status allocate_kv_cache(int32_t) override { return absl::OkStatus(); }
  absl::Status forward(const ForwardBatch& batch, std::vector<float>& logits) override {
    // Call 1 is the engine's dry run (not a CPU backend), call 2 the first step, call 3 faults.
    if (++calls_ >= 3) return absl::InternalError("CUDA error an illegal memory access was encountered");
    size_t rows = 0;
    for (const SequenceChunk& c : batch.sequences) rows += c.wants_logits ? 1 : 0;
    logits.assign(rows * info_.vocab_size, 0.0f);
    return absl::OkStatus();
  }

 private:
  CausalLMInfo info_;
  int calls_ = 0;
};

TEST(Engine, ADeviceFaultFailsTheEngineButNotTheProcess) {
  EngineOptions options;
  options.kv_cache_bytes = 64 * kBlockSize * 8;
  auto engine = Engine::create(std::make_unique<FaultingModel>(), GenerationConfig{}, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  SamplingParams params = greedy();
  params.max_tokens = 4;
  params.ignore_eos = true;
  Collector a, b;
  auto ha = (*engine)->submit({1, 2, 3}, params, a.callback());
  ASSERT_TRUE(ha.ok());
  a.wait();
  EXPECT_EQ(a.finish(), FinishReason::kError);
  EXPECT_EQ(a.tokens().size(), 1u) << "the first step ran, the second faulted";
  EXPECT_THAT(a.error(), ::testing::HasSubstr("illegal memory access"));
  EngineStats stats = (*engine)->stats();
  EXPECT_THAT(stats.failure, ::testing::HasSubstr("must be restarted"));
  EXPECT_EQ(stats.num_kv_blocks_in_use, 0);
  auto hb = (*engine)->submit({1, 2}, params, b.callback());
  ASSERT_FALSE(hb.ok());
  EXPECT_TRUE(absl::IsUnavailable(hb.status())) << hb.status();
}

// One CPU rank fails before the step's first all-reduce while the other waits in it (docs/tensor-parallel.md, "A
// rank that fails outside a collective"): no hang; the request ends with one error naming the rank and its reason,
// the engine is failed (nothing more runs on a group whose ranks no longer agree) and the process is fine.
TEST(Engine, ATensorParallelRankFailingAloneFailsTheEngineWithOneError) {
  LoadOptions load_options;
  load_options.num_threads = 2;
  load_options.tensor_parallel_size = 2;
  load_options.kv_cache_dtype = DType::kF32;
  absl::StatusOr<std::unique_ptr<CausalLM>> model = load_causal_lm(model_dir("qwen2-tied"), load_options);
  ASSERT_TRUE(model.ok()) << model.status();
  auto* group = dynamic_cast<TensorParallelLM*>(model->get());
  ASSERT_NE(group, nullptr);
  EngineOptions options;
  options.kv_cache_bytes = 64 * kBlockSize * (*model)->info().kv_bytes_per_token;
  auto engine = Engine::create(*std::move(model), GenerationConfig{}, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  group->fail_next_step_on_rank(1, absl::ResourceExhaustedError("the CPU backend cannot allocate 4096 bytes"));
  Collector a;
  auto ha = (*engine)->submit(read_reference("qwen2-tied")[0].prompt, greedy(4), a.callback());
  ASSERT_TRUE(ha.ok()) << ha.status();
  a.wait();
  EXPECT_EQ(a.finish(), FinishReason::kError);
  EXPECT_TRUE(a.tokens().empty());
  EXPECT_EQ(a.error(),
            "the engine failed and must be restarted (bmserver chat stop, then serve): the tensor-parallel group was "
            "aborted: rank 1 of 2 failed: the CPU backend cannot allocate 4096 bytes");
  EXPECT_EQ((*engine)->stats().failure, a.error());
  Collector b;
  auto hb = (*engine)->submit({1, 2}, greedy(2), b.callback());
  ASSERT_FALSE(hb.ok());
  EXPECT_TRUE(absl::IsUnavailable(hb.status())) << hb.status();
}

TEST(Engine, AnExceptionInAStepFailsTheEngineButNotTheProcess) {
  auto engine = load("qwen2-tied");
  ASSERT_NE(engine, nullptr);
  Collector c;
  std::atomic<int> outputs{0};
  c.on_output_ = [&](const SequenceOutput&) {
    if (outputs++ == 0) throw std::runtime_error("the callback broke");  // on the engine's thread
  };
  auto h = engine->submit(read_reference("qwen2-tied")[3].prompt, greedy(50), c.callback());
  ASSERT_TRUE(h.ok());
  for (int i = 0; i < 500 && engine->stats().failure.empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_THAT(engine->stats().failure, ::testing::HasSubstr("a step threw: the callback broke"));
  Collector d;
  auto refused = engine->submit({1, 2}, greedy(2), d.callback());
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsUnavailable(refused.status())) << refused.status();
}

// A device model that "uses" memory: weights up front, activations on the first forward (sized by the batch),
// the cache when allocated. Enough to check the GPU planning arithmetic without a GPU.
class MeteredDeviceModel final : public CausalLM {
 public:
  static constexpr int64_t kTotal = int64_t{16} << 30;
  static constexpr int64_t kWeights = int64_t{3} << 30;
  static constexpr int64_t kActivationBytesPerToken = int64_t{1} << 20;
  MeteredDeviceModel() {
    info_.architecture = "Fake";
    info_.vocab_size = 8;
    info_.max_position_embeddings = 4096;
    info_.num_layers = 1;
    info_.kv_bytes_per_token = int64_t{64} << 10;
  }
  const CausalLMInfo& info() const override { return info_; }
  int64_t device_memory_total_bytes() const override { return kTotal; }
  int64_t device_memory_free_bytes() const override {
    return kTotal - kWeights - activations_ - cache_ - graph_buffers_;
  }
  std::string backend_name() const override { return "cuda"; }
  int64_t media_activation_bytes() const override { return media_activation_bytes_; }
  int64_t media_activation_bytes_ = 0;  // a vision model: what its largest encode may take
  // Decode graphs: their own activations for max_seqs rows, reserved when enabled (as DecoderLM does).
  static constexpr int64_t kGraphBytesPerSeq = int64_t{4} << 20;
  absl::Status enable_decode_graphs(int32_t max_seqs) override {
    if (!graphs_supported_) return CausalLM::enable_decode_graphs(max_seqs);
    graph_buffers_ = int64_t{max_seqs} * kGraphBytesPerSeq;
    graphs_enabled_before_dry_run_ = first_batch_.sequences.empty();
    return absl::OkStatus();
  }
  absl::Status allocate_kv_cache(int32_t num_blocks) override {
    cache_ = int64_t{num_blocks} * kBlockSize * info_.kv_bytes_per_token;
    return absl::OkStatus();
  }
  // Keeps every candidate request (the host default selects the candidates).
  absl::Status forward_candidates(const ForwardBatch& batch, const CandidateRequest& request,
                                  Candidates& out) override {
    requests_.push_back(request);
    in_candidates_ = true;
    absl::Status s = CausalLM::forward_candidates(batch, request, out);
    in_candidates_ = false;
    return s;
  }
  absl::Status forward(const ForwardBatch& batch, std::vector<float>& logits) override {
    if (!in_candidates_) ++whole_row_steps_;
    if (first_batch_.sequences.empty()) first_batch_ = batch;
    activations_ =
        std::max<int64_t>(activations_, static_cast<int64_t>(batch.token_ids.size()) * kActivationBytesPerToken);
    size_t rows = 0;
    for (const SequenceChunk& c : batch.sequences) rows += c.wants_logits ? 1 : 0;
    logits.assign(rows * info_.vocab_size, 0.0f);
    return absl::OkStatus();
  }
  ForwardBatch first_batch_;
  int64_t activations_ = 0;
  int64_t cache_ = 0;
  bool graphs_supported_ = false;
  int64_t graph_buffers_ = 0;
  bool graphs_enabled_before_dry_run_ = false;
  int64_t whole_row_steps_ = 0;
  std::vector<CandidateRequest> requests_;

 private:
  bool in_candidates_ = false;
  CausalLMInfo info_;
};

TEST(Engine, OnADeviceTheLargestStepRunsFirstAndTheCacheGetsWhatIsLeft) {
  auto owned = std::make_unique<MeteredDeviceModel>();
  MeteredDeviceModel* model = owned.get();
  EngineOptions options;
  options.max_num_seqs = 8;
  options.max_num_batched_tokens = 1000;
  options.gpu_memory_utilization = 0.5;
  auto engine = Engine::create(std::move(owned), GenerationConfig{}, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  // The dry run: the whole token budget over max_num_seqs sequences, each wanting logits.
  ASSERT_EQ(model->first_batch_.sequences.size(), 8u);
  EXPECT_EQ(model->first_batch_.token_ids.size(), 1000u);
  for (const SequenceChunk& c : model->first_batch_.sequences) EXPECT_TRUE(c.wants_logits);
  // 16 GiB × 0.5 − (3 GiB weights + 1000 MiB activations) − 256 MiB headroom, in 1 MiB blocks (16 × 64 KiB).
  const int64_t expected_bytes =
      MeteredDeviceModel::kTotal / 2 - MeteredDeviceModel::kWeights - 1000 * (int64_t{1} << 20) - (int64_t{1} << 28);
  EXPECT_EQ((*engine)->stats().num_kv_blocks, expected_bytes / (int64_t{1} << 20));

  // A vision model leaves its largest encode's activations out of the cache too.
  auto vision = std::make_unique<MeteredDeviceModel>();
  vision->media_activation_bytes_ = int64_t{2} << 30;
  auto vision_engine = Engine::create(std::move(vision), GenerationConfig{}, options);
  ASSERT_TRUE(vision_engine.ok()) << vision_engine.status();
  EXPECT_EQ((*vision_engine)->stats().num_kv_blocks, (expected_bytes - (int64_t{2} << 30)) / (int64_t{1} << 20));
}

// A device model that logs how the engine drives a step: begin_forward (the forward is issued), then one finish
// call. What a row lists comes from the host plan, which the engine makes *after* begin_forward so that it runs
// while the device computes. The engine plans into the same CandidateRequest every step, so a snapshot of that
// request taken at begin_forward still holds the previous step's plan when the order is right, and already this
// step's plan when the plan came first.
class SplitStepModel final : public CausalLM {
 public:
  SplitStepModel() {
    info_.architecture = "Fake";
    info_.vocab_size = 8;
    info_.max_position_embeddings = 4096;
    info_.num_layers = 1;
    info_.kv_bytes_per_token = int64_t{64} << 10;
  }
  const CausalLMInfo& info() const override { return info_; }
  int64_t device_memory_total_bytes() const override { return int64_t{16} << 30; }
  int64_t device_memory_free_bytes() const override { return int64_t{15} << 30; }
  std::string backend_name() const override { return "cuda"; }
  absl::Status allocate_kv_cache(int32_t) override { return absl::OkStatus(); }
  // Token (position + 1) % 8 is the best one, so a greedy sequence's tokens differ from step to step.
  absl::Status forward(const ForwardBatch& batch, std::vector<float>& logits) override {
    logits.clear();
    int32_t position = 0;
    for (const SequenceChunk& c : batch.sequences) {
      position = c.num_cached_tokens + c.num_new_tokens;
      if (!c.wants_logits) continue;
      std::vector<float> row(8, 0.0f);
      row[static_cast<size_t>(position % 8)] = 5.0f;
      logits.insert(logits.end(), row.begin(), row.end());
    }
    return absl::OkStatus();
  }
  absl::Status begin_forward(const ForwardBatch& batch) override {
    events_.push_back("begin");
    begun_tokens_ = batch.token_ids;
    if (last_request_ != nullptr) request_at_begin_ = *last_request_;
    return CausalLM::begin_forward(batch);
  }
  absl::Status finish_logits(std::vector<float>& logits) override {
    events_.push_back("finish_logits");
    return CausalLM::finish_logits(logits);
  }
  absl::Status finish_candidates(const CandidateRequest& request, Candidates& out) override {
    events_.push_back("finish_candidates");
    if (last_request_ != nullptr && last_request_ == &request && request_at_begin_.has_value()) {
      ++compared_steps_;
      if (request_at_begin_->listed_ids == request.listed_ids) ++planned_before_begin_;
    }
    last_request_ = &request;
    request_at_begin_.reset();
    return CausalLM::finish_candidates(request, out);
  }
  std::vector<std::string> events_;
  std::vector<int32_t> begun_tokens_;
  int compared_steps_ = 0;
  int planned_before_begin_ = 0;

 private:
  CausalLMInfo info_;
  const CandidateRequest* last_request_ = nullptr;
  std::optional<CandidateRequest> request_at_begin_;
};

// Each step is issued (begin_forward) before the host plans its candidates and finished by exactly one call; the
// tokens are those the synchronous path gives (the model's best token, under a repetition penalty that lists every
// token seen, so each step's plan differs from the last one's).
TEST(Engine, TheStepIsIssuedBeforeItsCandidatesArePlanned) {
  auto owned = std::make_unique<SplitStepModel>();
  SplitStepModel* model = owned.get();
  EngineOptions options;
  options.max_num_seqs = 4;
  options.max_num_batched_tokens = 64;
  options.gpu_memory_utilization = 0.5;
  auto engine = Engine::create(std::move(owned), GenerationConfig{}, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  model->events_.clear();
  SamplingParams p = greedy(5);
  p.repetition_penalty = 1.1f;
  Collector out;
  auto h = (*engine)->submit({7, 7}, p, out.callback());
  ASSERT_TRUE(h.ok()) << h.status();
  out.wait();
  // A prompt of 2 tokens: the first token is 2 (position 2), then one per position; each is new, so each step
  // lists one more seen token than the step before.
  EXPECT_EQ(out.tokens(), (std::vector<int32_t>{2, 3, 4, 5, 6}));
  ASSERT_EQ(model->events_.size(), 10u);
  for (size_t i = 0; i < model->events_.size(); i += 2) {
    EXPECT_EQ(model->events_[i], "begin");
    EXPECT_EQ(model->events_[i + 1], "finish_candidates");
  }
  EXPECT_EQ(model->compared_steps_, 4);
  EXPECT_EQ(model->planned_before_begin_, 0) << "the candidates were planned before the step was issued";
}

// On a device, structured output runs from candidates: the grammar's mask goes to the backend with the candidate
// request (one mask for the constrained row, none for the other) and no whole row of logits is copied to the host.
TEST(Engine, ADeviceBackendGetsTheGrammarsMaskWithItsCandidateRequest) {
  EngineOptions options;
  options.max_num_seqs = 8;
  options.max_num_batched_tokens = 1000;
  options.gpu_memory_utilization = 0.5;
  auto owned = std::make_unique<MeteredDeviceModel>();
  MeteredDeviceModel* model = owned.get();
  auto engine = Engine::create(std::move(owned), GenerationConfig{}, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  // The dry run asks for every row under a mask of its own, so the masks' upload buffer has its peak size before
  // the cache is planned.
  ASSERT_EQ(model->requests_.size(), 1u);
  EXPECT_EQ(model->requests_[0].mask_rows, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(model->requests_[0].masks.size(), 8u * static_cast<size_t>(mask_words(8)));
  model->requests_.clear();
  std::vector<std::string> bytes = {"", "a", "b"};
  auto vocabulary = std::make_shared<const grammar::TokenVocabulary>(bytes, 3);
  absl::StatusOr<grammar::Grammar> g = grammar::build_grammar({grammar::GrammarKind::kRegex, "a+", {}, {}});
  ASSERT_TRUE(g.ok());
  SamplingParams p = greedy(4);
  p.grammar = *grammar::CompiledGrammar::compile(*g, vocabulary);
  // The model's logits are all 0: unconstrained greedy takes token 0, the grammar only ever allows 'a' (1).
  Collector constrained, free;
  auto h = (*engine)->submit({1, 2}, p, constrained.callback());
  ASSERT_TRUE(h.ok()) << h.status();
  auto h2 = (*engine)->submit({1, 2}, greedy(4), free.callback());
  ASSERT_TRUE(h2.ok()) << h2.status();
  constrained.wait();
  free.wait();
  EXPECT_EQ(constrained.tokens(), (std::vector<int32_t>{1, 1, 1, 1}));
  EXPECT_EQ(free.tokens(), (std::vector<int32_t>{0, 0, 0, 0}));
  EXPECT_EQ(model->whole_row_steps_, 0);
  // Each of the constrained request's 4 steps sent exactly its mask ('a' only; this generation config has no
  // end-of-sequence token) for its row and none for the other row, whichever steps the two shared.
  int constrained_steps = 0;
  for (const CandidateRequest& r : model->requests_) {
    if (r.mask_rows.empty()) continue;
    ++constrained_steps;
    EXPECT_EQ(std::count(r.mask_rows.begin(), r.mask_rows.end(), 0), 1);
    EXPECT_EQ(std::count(r.mask_rows.begin(), r.mask_rows.end(), -1), static_cast<long>(r.mask_rows.size()) - 1);
    EXPECT_EQ(r.masks, std::vector<uint32_t>{0b10u});
  }
  EXPECT_EQ(constrained_steps, 4);
}

// On a device, decode graphs (on by default) reserve their buffers before the dry run, so the KV cache is planned
// around them; a model that cannot record runs without them; --enforce-eager reserves nothing.
TEST(Engine, DecodeGraphBuffersAreReservedBeforeTheCacheIsPlanned) {
  const int64_t mib = int64_t{1} << 20;
  const int64_t without_graphs =
      (MeteredDeviceModel::kTotal / 2 - MeteredDeviceModel::kWeights - 1000 * mib - (int64_t{1} << 28)) / mib;
  auto blocks_with = [&](bool supported, DecodeGraphMode mode, bool* before_dry_run) -> int64_t {
    auto owned = std::make_unique<MeteredDeviceModel>();
    owned->graphs_supported_ = supported;
    MeteredDeviceModel* model = owned.get();
    EngineOptions options;
    options.max_num_seqs = 8;
    options.max_num_batched_tokens = 1000;
    options.gpu_memory_utilization = 0.5;
    options.decode_graphs = mode;
    auto engine = Engine::create(std::move(owned), GenerationConfig{}, options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    if (!engine.ok()) return -1;
    *before_dry_run = model->graphs_enabled_before_dry_run_;
    return (*engine)->stats().num_kv_blocks;
  };
  bool before = false;
  EXPECT_EQ(blocks_with(true, DecodeGraphMode::kAuto, &before), without_graphs - 8 * 4);  // 8 seqs × 4 MiB
  EXPECT_TRUE(before);
  EXPECT_EQ(blocks_with(true, DecodeGraphMode::kOff, &before), without_graphs);
  EXPECT_EQ(blocks_with(false, DecodeGraphMode::kAuto, &before), without_graphs);  // cannot record: eager
  auto owned = std::make_unique<MeteredDeviceModel>();
  EngineOptions forced;
  forced.decode_graphs = DecodeGraphMode::kOn;
  auto refused = Engine::create(std::move(owned), GenerationConfig{}, forced);
  EXPECT_TRUE(absl::IsUnimplemented(refused.status())) << refused.status();  // asked for, not available
}

// Submits every reference prompt at once with params_for(i) and returns each request's tokens, followed, with
// `logprobs`, by each token's log-probability in millionths.
std::vector<std::vector<int32_t>> generate_all(Engine& engine, const std::vector<Reference>& refs,
                                               const std::function<SamplingParams(size_t)>& params_for,
                                               bool logprobs = false) {
  std::vector<std::unique_ptr<Collector>> collectors;
  std::vector<std::unique_ptr<RequestHandle>> handles;
  for (size_t i = 0; i < refs.size(); ++i) {
    collectors.push_back(std::make_unique<Collector>());
    auto handle = engine.submit(refs[i].prompt, params_for(i), collectors.back()->callback());
    EXPECT_TRUE(handle.ok()) << handle.status();
    if (handle.ok()) handles.push_back(*std::move(handle));
  }
  std::vector<std::vector<int32_t>> tokens;
  for (auto& c : collectors) {
    c->wait();
    tokens.push_back(c->tokens());
    if (logprobs)
      for (const TokenLogprob& lp : c->logprobs()) tokens.back().push_back(static_cast<int32_t>(lp.logprob * 1e6f));
  }
  return tokens;
}

// Sampling from candidates (what the GPU path does) and from whole rows give the same tokens, for a batch that
// mixes greedy, top-k with penalties and bias, and logprobs.
TEST(Engine, CandidateSamplingMatchesWholeRowSampling) {
  const std::vector<Reference> refs = read_reference("qwen2-untied-sharded");
  auto run = [&](bool candidates) {
    EngineOptions options;
    options.sample_from_candidates = candidates;
    auto engine = load("qwen2-untied-sharded", options);
    return generate_all(*engine, refs, [&](size_t i) {
      SamplingParams p;
      p.max_tokens = 12;
      p.ignore_eos = true;
      p.seed = 100 + i;
      p.temperature = i % 3 == 0 ? 0.0f : 1.5f;
      p.top_k = 8;
      p.top_p = 0.9f;
      p.repetition_penalty = i % 2 ? 1.2f : 1.0f;
      p.presence_penalty = i % 2 ? 0.0f : 0.5f;
      p.logit_bias = {{static_cast<int32_t>(i), 2.0f}};
      p.logprobs = 2;
      return p;
    });
  };
  const auto from_candidates = run(true);
  const auto from_rows = run(false);
  EXPECT_EQ(from_candidates, from_rows);
  EXPECT_EQ(from_candidates.size(), refs.size());
}

// DeepSeek-R1's settings (temperature 0.6, top-p 0.95, no top-k) through candidates: rows whose nucleus lies in
// the candidates (made certain here by a large bias on a few tokens) draw from them; the others fetch their whole
// row from the step's logits. Either way the tokens are those of whole-row sampling.
TEST(Engine, TopPWithoutTopKSamplesFromCandidatesOrItsWholeRow) {
  const std::vector<Reference> refs = read_reference("qwen2-tied");
  auto run = [&](bool candidates, DecodeGraphMode graphs) {
    EngineOptions options;
    options.sample_from_candidates = candidates;
    options.decode_graphs = graphs;
    options.top_p_from_candidates = true;  // what a GPU engine does; off by default on the CPU backend
    auto engine = load("qwen2-tied", options);
    return generate_all(*engine, refs, [&](size_t i) {
      SamplingParams p;
      p.max_tokens = 12;
      p.ignore_eos = true;
      p.seed = 40 + i;
      p.temperature = 0.6f;
      p.top_p = 0.95f;
      if (i % 2 == 0) p.logit_bias = {{5, 9.0f}, {17, 9.5f}, {99, 9.0f}};  // a nucleus of three listed tokens
      return p;
    });
  };
  const auto from_candidates = run(true, DecodeGraphMode::kOff);
  EXPECT_EQ(from_candidates, run(false, DecodeGraphMode::kOff));
  EXPECT_EQ(from_candidates, run(true, DecodeGraphMode::kOn));  // rows fetched from a replayed step's logits
  for (size_t i = 0; i < from_candidates.size(); i += 2)
    for (int32_t t : from_candidates[i]) EXPECT_TRUE(t == 5 || t == 17 || t == 99) << "biased request " << i;
}

// Graph replays and op-by-op steps give the same tokens and log-probabilities for a mixed batch (greedy, seeded
// top-k/top-p with penalties and bias), whether sampling takes candidates or whole rows; graphs are off by default
// on the CPU backend.
TEST(Engine, DecodeGraphsChangeNoTokenOrLogprob) {
  const std::vector<Reference> refs = read_reference("llama3");
  auto run = [&](DecodeGraphMode mode, bool candidates) {
    EngineOptions options;
    options.decode_graphs = mode;
    options.sample_from_candidates = candidates;
    auto engine = load("llama3", options);
    const auto tokens = generate_all(
        *engine, refs,
        [&](size_t i) {
          SamplingParams p;
          p.max_tokens = 10 + static_cast<int32_t>(i);  // requests end at different steps: the batch shrinks
          p.ignore_eos = true;
          p.seed = 7 + i;
          p.temperature = i % 2 == 0 ? 0.0f : 0.8f;
          p.top_k = 16;
          p.top_p = 0.9f;
          p.frequency_penalty = 0.3f;
          p.logit_bias = {{static_cast<int32_t>(3 * i), 1.5f}};
          p.logprobs = 1;
          return p;
        },
        /*logprobs=*/true);
    const DecodeGraphStats graphs = engine->stats().decode_graphs;
    EXPECT_EQ(graphs.replayed > 0, mode == DecodeGraphMode::kOn);
    return tokens;
  };
  const auto eager = run(DecodeGraphMode::kAuto, true);
  EXPECT_EQ(run(DecodeGraphMode::kOn, true), eager);
  EXPECT_EQ(run(DecodeGraphMode::kOn, false), run(DecodeGraphMode::kOff, false));
}

}  // namespace
}  // namespace bm::engine

namespace bm::engine {
namespace {

// Structured output through the engine. The test checkpoints have 512 tokens and no tokenizer, so they get a
// made-up vocabulary: id 2 (eos) is special, ids 32..126 are their ASCII character, the rest pairs of
// characters; grammars compile against it exactly as against a real tokenizer's bytes.
std::shared_ptr<const grammar::TokenVocabulary> toy_vocabulary() {
  std::vector<std::string> bytes(512);
  for (int id = 32; id < 127; ++id) bytes[id] = std::string(1, static_cast<char>(id));
  const std::string alphabet = "abcxyz{}\":,[]0123456789 ";
  for (int id = 127, k = 0; id < 512; ++id, ++k)
    bytes[id] = std::string{alphabet[k % alphabet.size()], alphabet[(k / alphabet.size()) % alphabet.size()]};
  return std::make_shared<const grammar::TokenVocabulary>(std::move(bytes), 512);
}

std::shared_ptr<const grammar::CompiledGrammar> toy_grammar(grammar::GrammarKind kind, const std::string& text) {
  absl::StatusOr<grammar::Grammar> g = grammar::build_grammar({kind, text, {}, std::nullopt});
  EXPECT_TRUE(g.ok()) << g.status();
  absl::StatusOr<std::shared_ptr<const grammar::CompiledGrammar>> c =
      grammar::CompiledGrammar::compile(*g, toy_vocabulary());
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

std::string text_of(const std::vector<int32_t>& tokens, const grammar::TokenVocabulary& v) {
  std::string s;
  for (int32_t id : tokens) s += v.token_bytes(id);
  return s;
}

bool follows(const grammar::CompiledGrammar& g, const std::string& text, bool complete) {
  const int32_t c = g.advance(g.start(), text);
  return c != grammar::CompiledGrammar::kDead && (!complete || g.is_accepting(c));
}

// Every sampling path under a grammar, with unconstrained requests in the same batch: each constrained text is a
// sentence of its grammar (a bias of +100 on a forbidden token changes nothing), logprobs describe only allowed
// tokens, and the unconstrained requests get exactly the tokens they get alone.
TEST(Engine, GrammarConstrainsEverySamplingPathInAMixedBatch) {
  const std::vector<Reference> refs = read_reference("qwen2-tied");
  auto json = toy_grammar(grammar::GrammarKind::kJsonSchema,
                          R"({"type": "object", "properties": {"a": {"type": "integer", "maximum": 99},
                              "b": {"enum": ["xy", "zz"]}, "c": {"type": "array", "items": {"type": "boolean"},
                              "maxItems": 2}}, "required": ["a", "b", "c"]})");
  auto regex = toy_grammar(grammar::GrammarKind::kRegex, "[a-c]{2,4}(xyz|zz)");
  auto params_for = [&](size_t i, bool constrained) {
    SamplingParams p;
    p.max_tokens = 64;
    p.seed = 7 + i;
    p.ignore_eos = true;
    switch (i % 4) {
      case 0:
        p.temperature = 0;
        break;
      case 1:
        p.temperature = 1.3f, p.top_k = 20;
        break;
      case 2:
        p.temperature = 0.9f, p.top_p = 0.8f;
        break;
      case 3:
        p.temperature = 1.0f;
        break;
    }
    p.logit_bias = {{static_cast<int32_t>('q'), 100.0f}};  // never allowed by either grammar
    p.logprobs = 3;
    if (constrained && i % 2 == 0) p.grammar = i % 4 == 0 ? json : regex;
    if (constrained && i % 2 == 1) p.grammar = i % 4 == 1 ? regex : json;
    return p;
  };
  auto run = [&](bool constrained_half) {
    auto engine = load("qwen2-tied");
    std::vector<std::unique_ptr<Collector>> collectors;
    std::vector<std::unique_ptr<RequestHandle>> handles;
    for (size_t i = 0; i < 2 * refs.size(); ++i) {
      // Even requests unconstrained (always), odd ones under a grammar when constrained_half.
      SamplingParams p = params_for(i, constrained_half && i % 2 == 1);
      collectors.push_back(std::make_unique<Collector>());
      auto handle = engine->submit(refs[i % refs.size()].prompt, p, collectors.back()->callback());
      EXPECT_TRUE(handle.ok()) << handle.status();
      if (handle.ok()) handles.push_back(*std::move(handle));
    }
    for (auto& c : collectors) c->wait();
    return collectors;
  };
  auto mixed = run(true);
  auto plain = run(false);
  const grammar::TokenVocabulary& v = json->vocabulary();
  for (size_t i = 0; i < mixed.size(); ++i) {
    if (i % 2 == 0) {
      EXPECT_EQ(mixed[i]->tokens(), plain[i]->tokens()) << "unconstrained request " << i;
      continue;
    }
    const auto& g = params_for(i, true).grammar;
    const std::string text = text_of(mixed[i]->tokens(), v);
    EXPECT_EQ(mixed[i]->finish(), FinishReason::kStop) << i << ": " << text;
    EXPECT_TRUE(follows(*g, text, true)) << i << ": " << text;
    EXPECT_EQ(text.find('q'), std::string::npos);
    // Logprobs: the alternatives are all tokens the grammar allowed at that point.
    ASSERT_EQ(mixed[i]->logprobs().size(), mixed[i]->tokens().size());
    std::string prefix;
    for (size_t t = 0; t < mixed[i]->tokens().size(); ++t) {
      for (const auto& [id, logprob] : mixed[i]->logprobs()[t].top) {
        EXPECT_TRUE(std::isfinite(logprob));
        EXPECT_TRUE(follows(*g, prefix + v.token_bytes(id), false)) << "alternative " << id << " after " << prefix;
      }
      prefix += v.token_bytes(mixed[i]->tokens()[t]);
    }
  }
}

// End-of-sequence is allowed exactly where the text is complete: a +100 bias on eos cannot end the text before
// the grammar accepts, and ends it at the first token where it does.
TEST(Engine, GrammarAllowsEosExactlyWhereTheTextIsComplete) {
  auto engine = load("qwen2-tied");
  auto g = toy_grammar(grammar::GrammarKind::kRegex, "abc[a-z]*");
  SamplingParams p = greedy(20);
  p.ignore_eos = false;
  p.logit_bias = {{2, 100.0f}};
  p.grammar = g;
  Collector c;
  auto h = engine->submit(read_reference("qwen2-tied")[0].prompt, p, c.callback());
  ASSERT_TRUE(h.ok());
  c.wait();
  ASSERT_FALSE(c.tokens().empty());
  EXPECT_EQ(c.tokens().back(), 2);
  EXPECT_EQ(c.finish(), FinishReason::kStop);
  std::vector<int32_t> tokens = c.tokens();
  tokens.pop_back();
  const std::string text = text_of(tokens, g->vocabulary());
  EXPECT_TRUE(text == "abc" || (text.size() > 3 && text.size() <= 4 && text.rfind("abc", 0) == 0)) << text;
  EXPECT_TRUE(follows(*g, text, true));

  // max_tokens cuts a text that is not complete: finish is length.
  SamplingParams cut = greedy(2);
  cut.grammar = toy_grammar(grammar::GrammarKind::kRegex, "[a-z]{10}");
  Collector c2;
  auto h2 = engine->submit(read_reference("qwen2-tied")[0].prompt, cut, c2.callback());
  ASSERT_TRUE(h2.ok());
  c2.wait();
  EXPECT_EQ(c2.finish(), FinishReason::kLength);
  EXPECT_EQ(c2.tokens().size(), 2u);
}

// Structured output from candidates (what a GPU engine does: the mask applied by the backend before it selects
// them) and from whole rows give the same tokens and log-probabilities, for a batch that mixes constrained and
// unconstrained requests over greedy, top-k and top-p sampling, logprobs, and min_tokens with end-of-sequence.
TEST(Engine, GrammarFromCandidatesMatchesWholeRowSampling) {
  const std::vector<Reference> refs = read_reference("qwen2-tied");
  auto json = toy_grammar(grammar::GrammarKind::kJsonSchema,
                          R"({"type": "object", "properties": {"a": {"type": "integer", "maximum": 99},
                              "b": {"enum": ["xy", "zz"]}}, "required": ["a", "b"]})");
  auto regex = toy_grammar(grammar::GrammarKind::kRegex, "[a-c]{2,4}(xyz|zz)");
  auto params_for = [&](size_t i) {
    SamplingParams p;
    p.max_tokens = 64;
    p.seed = 11 + i;
    p.logprobs = 2;
    switch (i % 4) {
      case 0:
        p.temperature = 0;
        break;
      case 1:
        p.temperature = 1.3f, p.top_k = 20, p.repetition_penalty = 1.2f;
        break;
      case 2:
        p.temperature = 0.9f, p.top_p = 0.8f;
        break;
      case 3:
        p.temperature = 0, p.min_tokens = 8, p.logit_bias = {{2, 50.0f}};  // eos pushed, but not before 8 tokens
        break;
    }
    p.ignore_eos = i % 4 != 3;
    if (i % 2 == 1) p.grammar = i % 4 == 1 ? regex : json;
    return p;
  };
  struct Result {
    std::vector<int32_t> tokens;
    std::vector<int32_t> alternatives;  // each token's top logprob ids
    std::vector<float> logprobs;        // each token's, then its alternatives'
    FinishReason finish;
  };
  auto run = [&](bool candidates, DecodeGraphMode graphs) {
    EngineOptions options;
    options.decode_graphs = graphs;
    options.sample_from_candidates = candidates;
    options.top_p_from_candidates = candidates;    // both on: what a GPU engine does
    options.grammar_from_candidates = candidates;  // off by default on the CPU backend
    auto engine = load("qwen2-tied", options);
    std::vector<std::unique_ptr<Collector>> collectors;
    std::vector<std::unique_ptr<RequestHandle>> handles;
    for (size_t i = 0; i < 2 * refs.size(); ++i) {
      collectors.push_back(std::make_unique<Collector>());
      auto handle = engine->submit(refs[i % refs.size()].prompt, params_for(i), collectors.back()->callback());
      EXPECT_TRUE(handle.ok()) << handle.status();
      if (handle.ok()) handles.push_back(*std::move(handle));
    }
    std::vector<Result> out;
    for (auto& c : collectors) {
      c->wait();
      Result r{c->tokens(), {}, {}, c->finish()};
      for (const TokenLogprob& lp : c->logprobs()) {
        r.logprobs.push_back(lp.logprob);
        for (const auto& [id, logprob] : lp.top) {
          r.alternatives.push_back(id);
          r.logprobs.push_back(logprob);
        }
      }
      out.push_back(std::move(r));
    }
    return out;
  };
  const std::vector<Result> from_rows = run(false, DecodeGraphMode::kOff);
  // Also from replayed decode steps: the masks go with the candidate request after the replay.
  for (const std::vector<Result>& from_candidates : {run(true, DecodeGraphMode::kOff), run(true, DecodeGraphMode::kOn)})
    for (size_t i = 0; i < from_rows.size(); ++i) {
      ASSERT_EQ(from_candidates.size(), from_rows.size());
      EXPECT_EQ(from_candidates[i].tokens, from_rows[i].tokens) << "request " << i;
      EXPECT_EQ(from_candidates[i].alternatives, from_rows[i].alternatives) << "request " << i;
      EXPECT_EQ(from_candidates[i].finish, from_rows[i].finish) << "request " << i;
      ASSERT_EQ(from_candidates[i].logprobs.size(), from_rows[i].logprobs.size()) << "request " << i;
      for (size_t t = 0; t < from_rows[i].logprobs.size(); ++t)
        EXPECT_NEAR(from_candidates[i].logprobs[t], from_rows[i].logprobs[t], 1e-4) << "request " << i << " at " << t;
      if (i % 2 == 1) {
        const SamplingParams p = params_for(i);
        const grammar::TokenVocabulary& v = json->vocabulary();
        std::vector<int32_t> text_tokens = from_rows[i].tokens;
        if (!text_tokens.empty() && text_tokens.back() == 2) text_tokens.pop_back();
        EXPECT_TRUE(follows(*p.grammar, text_of(text_tokens, v), true)) << i << ": " << text_of(text_tokens, v);
        EXPECT_EQ(from_rows[i].finish, FinishReason::kStop) << "request " << i;
      }
    }
}

// A text that nothing may extend ends the sequence at once (no step spent waiting for end-of-sequence), even
// under ignore_eos, and with a repetition penalty and min_tokens that would mask the only way out.
TEST(Engine, AClosedTextStopsTheSequence) {
  auto engine = load("qwen2-tied");
  SamplingParams p = greedy(30);
  p.min_tokens = 10;
  p.repetition_penalty = 1.3f;
  absl::StatusOr<grammar::Grammar> g = grammar::build_grammar({grammar::GrammarKind::kChoice, "", {"yes", "no"}, {}});
  ASSERT_TRUE(g.ok());
  p.grammar = *grammar::CompiledGrammar::compile(*g, toy_vocabulary());
  Collector c;
  auto h = engine->submit(read_reference("qwen2-tied")[1].prompt, p, c.callback());
  ASSERT_TRUE(h.ok());
  c.wait();
  const std::string text = text_of(c.tokens(), p.grammar->vocabulary());
  EXPECT_TRUE(text == "yes" || text == "no") << text;
  EXPECT_EQ(c.finish(), FinishReason::kStop);
}

// ---- images and videos (Qwen2.5-VL; tests/unit/engine/models/decoder_media_test.cpp checks the logits)

std::shared_ptr<const PromptMedia> shared_media(const PromptMedia& media) {
  return std::make_shared<const PromptMedia>(media);
}

TEST(EngineMedia, GreedyContinuationsMatchTransformersBatchedAndChunked) {
  EngineOptions options;
  options.max_num_batched_tokens = 24;  // prefill chunks cut through the images
  auto engine = load("qwen2_5_vl-text", options);
  ASSERT_NE(engine, nullptr);
  ASSERT_TRUE(engine->media_support().ok()) << engine->media_support();
  const std::vector<media_fixture::MediaCase> cases = media_fixture::read_cases();
  std::vector<std::unique_ptr<Collector>> collectors;
  std::vector<std::unique_ptr<RequestHandle>> handles;
  for (const auto& c : cases) {
    collectors.push_back(std::make_unique<Collector>());
    auto h = engine->submit(c.ids, greedy(), collectors.back()->callback(), shared_media(c.media));
    ASSERT_TRUE(h.ok()) << h.status();
    handles.push_back(*std::move(h));
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    collectors[i]->wait();
    EXPECT_EQ(collectors[i]->tokens(), cases[i].greedy_ids) << collectors[i]->error();
  }
  EXPECT_EQ(engine->stats().media_encoded, 7);  // every image and video of the five prompts, once
}

TEST(EngineMedia, TheSamePadTokensWithAnotherImageDoNotReuseItsBlocks) {
  const media_fixture::MediaCase c = media_fixture::read_cases()[2];  // 2 text tokens, an image of 16, 40 text
  PromptMedia other = c.media;
  for (float& v : other.items[0].pixel_values) v = -v;
  other.items[0].hash = media_hash(other.items[0]);
  ASSERT_NE(other.items[0].hash, c.media.items[0].hash);
  // What the other image gives on an engine that never saw the first.
  std::vector<int32_t> expected;
  {
    auto fresh = load("qwen2_5_vl-text");
    ASSERT_NE(fresh, nullptr);
    Collector alone;
    auto h = fresh->submit(c.ids, greedy(), alone.callback(), shared_media(other));
    ASSERT_TRUE(h.ok());
    alone.wait();
    expected = alone.tokens();
  }
  auto engine = load("qwen2_5_vl-text");
  ASSERT_NE(engine, nullptr);
  Collector first, second, again;
  auto h1 = engine->submit(c.ids, greedy(), first.callback(), shared_media(c.media));
  ASSERT_TRUE(h1.ok());
  first.wait();
  EXPECT_EQ(first.tokens(), c.greedy_ids);
  auto h2 = engine->submit(c.ids, greedy(), second.callback(), shared_media(other));
  ASSERT_TRUE(h2.ok());
  second.wait();
  EXPECT_NE(second.tokens(), c.greedy_ids);
  EXPECT_EQ(second.tokens(), expected);
  EXPECT_EQ(second.cached(), 0);  // the image starts in the first block
  // The first image again: its blocks and its embeddings come from the caches.
  auto h3 = engine->submit(c.ids, greedy(), again.callback(), shared_media(c.media));
  ASSERT_TRUE(h3.ok());
  again.wait();
  EXPECT_EQ(again.tokens(), c.greedy_ids);
  EXPECT_EQ(again.cached(), 48);
  EXPECT_EQ(engine->stats().media_encoded, 2);
  EXPECT_EQ(engine->stats().media_cache_hits, 1);
}

TEST(EngineMedia, AnImageInTwoRequestsIsEncodedOnce) {
  const media_fixture::MediaCase c = media_fixture::read_cases()[0];
  auto engine = load("qwen2_5_vl-text");
  ASSERT_NE(engine, nullptr);
  Collector a, b;
  auto ha = engine->submit(c.ids, greedy(), a.callback(), shared_media(c.media));
  auto hb = engine->submit(c.ids, greedy(), b.callback(), shared_media(c.media));
  ASSERT_TRUE(ha.ok() && hb.ok());
  a.wait();
  b.wait();
  EXPECT_EQ(a.tokens(), c.greedy_ids);
  EXPECT_EQ(b.tokens(), c.greedy_ids);
  // Admitted together: one pass settles both; one after the other: the second is a cache hit.
  EXPECT_EQ(engine->stats().media_encoded, 1);
}

TEST(EngineMedia, MediaThatDoNotFitThePromptOrTheModelAreRefused) {
  const media_fixture::MediaCase c = media_fixture::read_cases()[0];
  auto vl = load("qwen2_5_vl-text");
  ASSERT_NE(vl, nullptr);
  std::vector<int32_t> short_run = c.ids;
  short_run.erase(std::find(short_run.begin(), short_run.end(), 510));
  auto h = vl->submit(short_run, greedy(), nullptr, shared_media(c.media));
  EXPECT_TRUE(absl::IsInvalidArgument(h.status())) << h.status();
  h = vl->submit(c.ids, greedy(), nullptr);  // pad tokens, no image
  EXPECT_TRUE(absl::IsInvalidArgument(h.status())) << h.status();
  auto text = load("qwen2-tied");
  ASSERT_NE(text, nullptr);
  EXPECT_TRUE(absl::IsFailedPrecondition(text->media_support()));
  h = text->submit({5, 6, 7}, greedy(), nullptr, shared_media(c.media));
  EXPECT_TRUE(absl::IsFailedPrecondition(h.status())) << h.status();
  EXPECT_NE(std::string(h.status().message()).find("text only"), std::string::npos) << h.status();
}

}  // namespace
}  // namespace bm::engine
