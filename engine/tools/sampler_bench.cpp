// How long the sampler takes for one decode step of a large batch: rows × Qwen2.5's vocabulary (151936) of
// logits, for the sampling settings servers actually see. On a GPU a decode step of 256 sequences of a 7B model
// takes tens of milliseconds, so host-side sampling must stay well below that. Prints figures; asserts nothing.
//
// Usage: bm_sampler_bench [--rows N] [--vocab V] [--steps S] [--threads T]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/runtime/batch_sampler.h"
#include "engine/runtime/sampler.h"
#include "engine/runtime/sequence.h"

namespace {

using namespace bm::engine;
using Clock = std::chrono::steady_clock;

struct Setting {
  const char* name;
  SamplingParams params;
};

std::vector<Setting> settings() {
  SamplingParams greedy;
  greedy.temperature = 0;
  SamplingParams qwen;  // Qwen2.5's generation_config.json
  qwen.temperature = 0.7f;
  qwen.top_p = 0.8f;
  qwen.top_k = 20;
  qwen.repetition_penalty = 1.05f;
  SamplingParams r1;  // DeepSeek-R1-Distill's recommendation: no top-k
  r1.temperature = 0.6f;
  r1.top_p = 0.95f;
  SamplingParams plain;  // temperature 1, nothing else: the full vocabulary
  plain.temperature = 1.0f;
  return {{"greedy", greedy},
          {"qwen2.5 (t 0.7, top-p 0.8, top-k 20, rep 1.05)", qwen},
          {"r1 (t 0.6, top-p 0.95)", r1},
          {"plain (t 1)", plain}};
}

}  // namespace

int main(int argc, char** argv) {
  int32_t rows = 256, vocab = 151936, steps = 5, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int32_t value = std::atoi(argv[i + 1]);
    if (flag == "--rows")
      rows = value;
    else if (flag == "--vocab")
      vocab = value;
    else if (flag == "--steps")
      steps = value;
    else if (flag == "--threads")
      threads = value;
    else {
      std::fprintf(stderr, "bm_sampler_bench: unknown option %s\n", flag.c_str());
      return 2;
    }
  }
  // Logits shaped like a language model's: a few strong candidates over a long normal tail.
  std::mt19937 rng(7);
  std::normal_distribution<float> tail(0.0f, 2.0f);
  std::vector<float> logits(static_cast<size_t>(rows) * vocab);
  for (float& l : logits) l = tail(rng);
  for (int32_t r = 0; r < rows; ++r)
    for (int32_t j = 0; j < 8; ++j) logits[static_cast<size_t>(r) * vocab + rng() % vocab] += 12.0f - j;

  Sampler sampler(vocab, {vocab - 1});
  BatchSampler batch_sampler(sampler, threads);
  std::printf("%d rows x %d vocab, %d threads\n", rows, vocab, batch_sampler.num_threads());
  for (const Setting& s : settings()) {
    std::vector<std::unique_ptr<Sequence>> seqs;
    std::vector<Sequence*> order;
    for (int32_t r = 0; r < rows; ++r) {
      auto request = std::make_shared<Request>();
      request->params = s.params;
      std::vector<int32_t> prompt(512);
      for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % vocab);
      seqs.push_back(std::make_unique<Sequence>(r, 0, request, std::move(prompt), r));
      order.push_back(seqs.back().get());
    }
    std::vector<SampledToken> out;
    const Clock::time_point start = Clock::now();
    for (int32_t step = 0; step < steps; ++step) batch_sampler.sample(logits, order, out);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count() / steps;
    std::printf("  %-48s %8.2f ms per step, %6.1f us per row\n", s.name, ms, 1000.0 * ms / rows);
  }
  return 0;
}
