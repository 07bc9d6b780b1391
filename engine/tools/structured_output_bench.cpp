// Decode throughput of a batch under a JSON-schema grammar against the same batch unconstrained, on the engine
// end to end (scheduler, forward, sampler, matcher). The schema is an array of at least 1000 mid-size objects so
// that no sequence completes its JSON within the token budget: both runs produce exactly batch x tokens tokens.
// The constrained run is repeated: the first meets the grammar's states cold, the second finds their masks
// cached (as a server does after the first requests with a schema). Prints figures; asserts nothing.
//
// Usage: bm_structured_output_bench MODEL_DIR [--batch 32] [--tokens 128] [--threads 0] [--temperature 1]
// MODEL_DIR needs weights and tokenizer files (tests/tools/make_tiny_served_model.py makes a small one; with a
// tiny model the forward costs little, so the grammar's share is larger than with any real model).
#include <sys/resource.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "engine/grammar/compiled_grammar.h"
#include "engine/grammar/grammar_request.h"
#include "engine/runtime/engine.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

using namespace bm::engine;
using Clock = std::chrono::steady_clock;

constexpr const char* kSchema = R"({"type": "array", "minItems": 1000, "items": {
  "type": "object",
  "properties": {
    "id": {"type": "string", "format": "uuid"},
    "name": {"type": "string", "maxLength": 40},
    "age": {"type": "integer", "minimum": 0, "maximum": 130},
    "role": {"enum": ["admin", "editor", "viewer", "guest"]},
    "score": {"type": "number", "minimum": 0, "maximum": 100},
    "active": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 5}
  },
  "required": ["id", "name", "age", "role", "active", "tags"]}})";

struct Run {
  double seconds = 0;
  double cpu_seconds = 0;  // user + system time of the whole process: what the run cost, however loaded the host
  int64_t tokens = 0;
};

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

float g_temperature = 1.0f;

Run run(Engine& engine, const std::vector<int32_t>& prompt, int batch, int tokens,
        std::shared_ptr<const grammar::CompiledGrammar> g) {
  std::mutex mutex;
  std::condition_variable cv;
  int remaining = batch;
  int64_t produced = 0;
  std::vector<std::unique_ptr<RequestHandle>> handles;
  const auto start = Clock::now();
  const double cpu_start = cpu_seconds();
  for (int i = 0; i < batch; ++i) {
    SamplingParams p;
    p.max_tokens = tokens;
    p.temperature = g_temperature;
    p.ignore_eos = true;
    p.seed = 1000 + i;
    p.grammar = g;
    auto h = engine.submit(prompt, p, [&](SequenceOutput out) {
      std::lock_guard<std::mutex> lock(mutex);
      produced += static_cast<int64_t>(out.new_token_ids.size());
      if (out.finish && --remaining == 0) cv.notify_all();
    });
    if (!h.ok()) {
      std::fprintf(stderr, "%s\n", std::string(h.status().message()).c_str());
      std::exit(1);
    }
    handles.push_back(*std::move(h));
  }
  std::unique_lock<std::mutex> lock(mutex);
  cv.wait(lock, [&] { return remaining == 0; });
  return {std::chrono::duration<double>(Clock::now() - start).count(), cpu_seconds() - cpu_start, produced};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR [--batch N] [--tokens T] [--threads N]\n", argv[0]);
    return 2;
  }
  int batch = 32, tokens = 128, threads = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--batch")) batch = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--tokens")) tokens = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--temperature")) g_temperature = static_cast<float>(std::atof(argv[i + 1]));
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::load(argv[1]);
  EngineOptions options;
  options.num_threads = threads;
  options.kv_cache_bytes = int64_t{256} << 20;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::load(argv[1], options);
  if (!tokenizer.ok() || !engine.ok()) {
    std::fprintf(stderr, "%s\n",
                 std::string((!tokenizer.ok() ? tokenizer.status() : engine.status()).message()).c_str());
    return 1;
  }
  auto vocabulary = grammar::TokenVocabulary::from_tokenizer(**tokenizer, (*tokenizer)->vocab_size());
  absl::StatusOr<grammar::Grammar> g = grammar::build_grammar({grammar::GrammarKind::kJsonSchema, kSchema, {}, {}});
  absl::StatusOr<std::shared_ptr<const grammar::CompiledGrammar>> compiled =
      g.ok() ? grammar::CompiledGrammar::compile(*g, vocabulary) : g.status();
  if (!compiled.ok()) {
    std::fprintf(stderr, "%s\n", std::string(compiled.status().message()).c_str());
    return 1;
  }
  const std::vector<int32_t> prompt = (*tokenizer)->encode("Write the records as JSON.", false);
  run(**engine, prompt, batch, 8, nullptr);  // warm-up: threads, caches
  const Run plain = run(**engine, prompt, batch, tokens, nullptr);
  const Run cold = run(**engine, prompt, batch, tokens, *compiled);
  const Run warm = run(**engine, prompt, batch, tokens, *compiled);
  const Run plain2 = run(**engine, prompt, batch, tokens, nullptr);
  auto rate = [](const Run& r) { return static_cast<double>(r.tokens) / r.seconds; };
  auto cost = [](const Run& r) { return 1000 * r.cpu_seconds / static_cast<double>(r.tokens); };
  const double base = (rate(plain) + rate(plain2)) / 2;
  const double base_cost = (cost(plain) + cost(plain2)) / 2;
  std::printf("batch %d x %d tokens, temperature %g, CPU backend\n", batch, tokens, g_temperature);
  std::printf("unconstrained:            %8.1f tokens/s (%.1f and %.1f), CPU %.3f ms/token (%.3f and %.3f)\n", base,
              rate(plain), rate(plain2), base_cost, cost(plain), cost(plain2));
  std::printf("constrained, cold masks:  %8.1f tokens/s (%+.1f%%), CPU %.3f ms/token (%+.1f%%)\n", rate(cold),
              100 * (rate(cold) / base - 1), cost(cold), 100 * (cost(cold) / base_cost - 1));
  std::printf("constrained, warm masks:  %8.1f tokens/s (%+.1f%%), CPU %.3f ms/token (%+.1f%%)\n", rate(warm),
              100 * (rate(warm) / base - 1), cost(warm), 100 * (cost(warm) / base_cost - 1));
  std::printf("grammar cache: %d configurations, %d masks\n", (*compiled)->num_configs(),
              (*compiled)->num_cached_masks());
  return 0;
}
