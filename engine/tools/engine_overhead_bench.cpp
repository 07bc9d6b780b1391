// The engine's own cost per decode step — scheduling, block bookkeeping, building the batch, sampling, delivering
// outputs — with a model that costs nothing: a GPU model that returns sampling candidates (forward_candidates)
// instantly. On a GPU a 256-sequence decode step of a 7B model takes tens of milliseconds; everything the host adds
// per step comes straight off the throughput. Prints figures; asserts nothing.
//
// Usage: bm_engine_overhead_bench [--seqs N] [--prompt-tokens P] [--completion-tokens C] [--threads T]
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "engine/runtime/engine.h"

namespace {

using namespace bm::engine;
using Clock = std::chrono::steady_clock;

// Qwen2.5's vocabulary and a 7B's KV size, answering instantly with plausible candidates.
class InstantModel final : public CausalLM {
 public:
  InstantModel() {
    info_.architecture = "Instant";
    info_.vocab_size = 151936;
    info_.max_position_embeddings = 32768;
    info_.num_layers = 28;
    info_.kv_bytes_per_token = 57344;
  }
  const CausalLMInfo& info() const override { return info_; }
  int64_t device_memory_total_bytes() const override { return int64_t{80} << 30; }
  int64_t device_memory_free_bytes() const override { return int64_t{60} << 30; }
  std::string backend_name() const override { return "cuda"; }
  absl::Status allocate_kv_cache(int32_t) override { return absl::OkStatus(); }
  absl::Status forward(const ForwardBatch& batch, std::vector<float>& logits) override {
    logits.assign(rows(batch) * static_cast<size_t>(info_.vocab_size), 0.0f);
    for (size_t r = 0; r < rows(batch); ++r) logits[r * info_.vocab_size + rng_() % info_.vocab_size] = 5.0f;
    return absl::OkStatus();
  }
  absl::Status forward_candidates(const ForwardBatch& batch, const CandidateRequest& request,
                                  Candidates& out) override {
    const size_t n = rows(batch);
    out.k = request.k;
    out.ids.resize(n * request.k);
    out.logits.resize(out.ids.size());
    for (size_t i = 0; i < out.ids.size(); ++i) {
      out.ids[i] = static_cast<int32_t>((rng_() % 1000) * 150 + i % request.k);  // distinct within a row
      out.logits[i] = 10.0f - static_cast<float>(i % request.k) * 0.3f;
    }
    out.listed_logits.assign(request.listed_ids.size(), 1.0f);
    out.log_sum_exp.assign(n, 12.0f);
    // Top-p rows: the candidates hold most of the tempered mass (the rest of the vocabulary sits at logit 0), as
    // a trained model's nucleus usually does, so the draw settles from them.
    out.tempered_lse.clear();
    for (size_t r = 0; r < request.inverse_temperatures.size(); ++r) {
      double mass = static_cast<double>(info_.vocab_size - request.k);
      for (int32_t i = 0; i < request.k; ++i)
        mass += std::exp(double{out.logits[r * request.k + i]} * request.inverse_temperatures[r]);
      out.tempered_lse.push_back(static_cast<float>(std::log(mass)));
    }
    return absl::OkStatus();
  }

 private:
  static size_t rows(const ForwardBatch& batch) {
    size_t n = 0;
    for (const SequenceChunk& c : batch.sequences) n += c.wants_logits ? 1 : 0;
    return n;
  }
  CausalLMInfo info_;
  std::mt19937 rng_{3};
};

struct Done {
  std::mutex mutex;
  std::condition_variable cv;
  int remaining = 0;
};

void run(const char* name, SamplingParams params, int32_t seqs, int32_t prompt, int32_t completion, int32_t threads) {
  EngineOptions options;
  options.max_num_seqs = seqs;
  options.num_threads = threads;
  options.max_num_batched_tokens = 8192;
  auto engine = Engine::create(std::make_unique<InstantModel>(), GenerationConfig{}, options);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", std::string(engine.status().message()).c_str());
    std::exit(1);
  }
  params.max_tokens = completion;
  params.ignore_eos = true;
  Done done;
  done.remaining = seqs;
  std::mt19937 rng(7);
  std::vector<std::unique_ptr<RequestHandle>> handles;
  const Clock::time_point start = Clock::now();
  for (int32_t i = 0; i < seqs; ++i) {
    std::vector<int32_t> ids(prompt);
    for (int32_t& t : ids) t = static_cast<int32_t>(rng() % 150000);
    auto handle = (*engine)->submit(std::move(ids), params, [&done](SequenceOutput out) {
      if (!out.finish) return;
      std::lock_guard<std::mutex> lock(done.mutex);
      if (--done.remaining == 0) done.cv.notify_all();
    });
    if (!handle.ok()) std::exit(1);
    handles.push_back(*std::move(handle));
  }
  std::unique_lock<std::mutex> lock(done.mutex);
  done.cv.wait(lock, [&] { return done.remaining == 0; });
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const int64_t steps = (*engine)->stats().num_steps;
  std::printf("  %-34s %6lld steps, %7.3f ms per step, %8.0f tokens/s of host capacity\n", name,
              static_cast<long long>(steps), 1000.0 * seconds / static_cast<double>(steps),
              static_cast<double>(seqs) * completion / seconds);
}

}  // namespace

int main(int argc, char** argv) {
  int32_t seqs = 256, prompt = 1024, completion = 256, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int32_t value = std::atoi(argv[i + 1]);
    if (flag == "--seqs")
      seqs = value;
    else if (flag == "--prompt-tokens")
      prompt = value;
    else if (flag == "--completion-tokens")
      completion = value;
    else if (flag == "--threads")
      threads = value;
    else {
      std::fprintf(stderr, "bm_engine_overhead_bench: unknown option %s\n", flag.c_str());
      return 2;
    }
  }
  std::printf("%d sequences, %d prompt + %d completion tokens, an instant model with Qwen2.5's vocabulary\n", seqs,
              prompt, completion);
  SamplingParams greedy;
  greedy.temperature = 0;
  run("greedy (candidates)", greedy, seqs, prompt, completion, threads);
  SamplingParams qwen;
  qwen.temperature = 0.7f;
  qwen.top_p = 0.8f;
  qwen.top_k = 20;
  qwen.repetition_penalty = 1.05f;
  run("qwen2.5 defaults (candidates)", qwen, seqs, prompt, completion, threads);
  SamplingParams r1;
  r1.temperature = 0.6f;
  r1.top_p = 0.95f;
  run("r1 t 0.6 top-p 0.95 (candidates)", r1, seqs, prompt, completion, threads);
  return 0;
}
