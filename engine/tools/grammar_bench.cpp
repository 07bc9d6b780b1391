// Structured output costs on a real vocabulary (Qwen2.5's 151,643 tokens + specials): vocabulary trie build,
// grammar compile times over a schema corpus (median, p99), and the per-token mask time along generations that
// follow a mid-size schema (random allowed tokens, seeded): the first generation meets every state cold, later
// ones find most masks cached, as a server does after the first request with a schema. Prints figures; asserts
// nothing.
//
// Usage: bm_grammar_bench MODEL_DIR [--corpus DIR_OF_SCHEMAS] [--generations N] [--tokens T]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/grammar/compiled_grammar.h"
#include "engine/grammar/grammar_matcher.h"
#include "engine/grammar/grammar_request.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

using namespace bm::engine;
using Clock = std::chrono::steady_clock;

double us_since(Clock::time_point t) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t).count();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5))];
}

// A pydantic-style model of moderate size: nested object, array of objects, enum, formats, bounds, optional.
constexpr const char* kMidSchema = R"({
  "type": "object",
  "properties": {
    "id": {"type": "string", "format": "uuid"},
    "name": {"type": "string", "maxLength": 40},
    "age": {"type": "integer", "minimum": 0, "maximum": 130},
    "email": {"type": "string", "format": "email"},
    "role": {"enum": ["admin", "editor", "viewer", "guest"]},
    "score": {"type": "number", "minimum": 0, "maximum": 100},
    "active": {"type": "boolean"},
    "created": {"type": "string", "format": "date-time"},
    "address": {"$ref": "#/$defs/Address"},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 5},
    "manager": {"anyOf": [{"$ref": "#/$defs/Ref"}, {"type": "null"}]}
  },
  "required": ["id", "name", "age", "role", "active", "address", "tags"],
  "$defs": {
    "Address": {"type": "object", "properties": {"street": {"type": "string", "maxLength": 30},
      "city": {"type": "string", "maxLength": 20}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
      "required": ["street", "city", "zip"]},
    "Ref": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string", "maxLength": 20}},
      "required": ["id"]}
  }
})";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR [--corpus DIR] [--generations N] [--tokens T]\n", argv[0]);
    return 2;
  }
  std::string corpus;
  int generations = 20, max_tokens = 300;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--corpus")) corpus = argv[i + 1];
    if (!std::strcmp(argv[i], "--generations")) generations = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--tokens")) max_tokens = std::atoi(argv[i + 1]);
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::load(argv[1]);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", std::string(tokenizer.status().message()).c_str());
    return 1;
  }
  const int32_t vocab_size = 151936;  // Qwen2.5's logits row
  auto t0 = Clock::now();
  std::shared_ptr<const grammar::TokenVocabulary> vocabulary =
      grammar::TokenVocabulary::from_tokenizer(**tokenizer, vocab_size);
  std::printf("vocabulary: %d tokens in the tokenizer, %d trie nodes, built in %.1f ms\n", (*tokenizer)->vocab_size(),
              vocabulary->num_nodes(), us_since(t0) / 1000);
  int64_t under_exits = 0, under_text_exits = 0;
  for (int32_t node : vocabulary->exit_nodes()) under_exits += vocabulary->subtree_end(node) - node;
  for (const auto& exit : vocabulary->text_exits()) under_text_exits += vocabulary->subtree_end(exit.node) - exit.node;
  std::printf(
      "settled by length: %zu plain tokens (%zu exits, %lld nodes under them); by characters: %zu more text tokens "
      "(%zu exits, %lld nodes under them)\n",
      vocabulary->plain_ids_by_length().size(), vocabulary->exit_nodes().size(), static_cast<long long>(under_exits),
      vocabulary->text_ids_by_count().size(), vocabulary->text_exits().size(),
      static_cast<long long>(under_text_exits));

  if (!corpus.empty()) {
    std::vector<double> compile_us;
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(corpus))
      if (entry.path().extension() == ".json") files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    int failed = 0;
    for (const auto& f : files) {
      std::ifstream in(f);
      std::stringstream text;
      text << in.rdbuf();
      grammar::GrammarRequest request{grammar::GrammarKind::kJsonSchema, text.str(), {}, std::nullopt};
      auto t = Clock::now();
      absl::StatusOr<grammar::Grammar> g = grammar::build_grammar(request);
      absl::StatusOr<std::shared_ptr<const grammar::CompiledGrammar>> c =
          g.ok() ? grammar::CompiledGrammar::compile(*g, vocabulary) : g.status();
      if (c.ok()) (*c)->allowed_tokens((*c)->start());  // the first mask is part of what a request waits for
      compile_us.push_back(us_since(t));
      failed += !c.ok();
    }
    std::printf(
        "compile (schema -> grammar -> automaton -> first mask), %zu schemas (%d refused): median %.0f us, "
        "p99 %.0f us, max %.0f us\n",
        files.size(), failed, percentile(compile_us, 0.5), percentile(compile_us, 0.99), percentile(compile_us, 1.0));
  }

  grammar::GrammarRequest request{grammar::GrammarKind::kJsonSchema, kMidSchema, {}, std::nullopt};
  t0 = Clock::now();
  absl::StatusOr<grammar::Grammar> g = grammar::build_grammar(request);
  absl::StatusOr<std::shared_ptr<const grammar::CompiledGrammar>> compiled =
      g.ok() ? grammar::CompiledGrammar::compile(*g, vocabulary) : g.status();
  if (!compiled.ok()) {
    std::fprintf(stderr, "%s\n", std::string(compiled.status().message()).c_str());
    return 1;
  }
  std::printf("mid-size schema: %d rules, %d automaton states, compiled in %.0f us\n", g->num_rules(),
              (*compiled)->num_states(), us_since(t0));

  std::mt19937_64 rng(2025);
  std::vector<float> logits(static_cast<size_t>(vocab_size));
  std::vector<double> first_mask, later_mask, apply_us;
  // Later generations' mask times by how the mask was found: cached, text by count, plain text by length, a byte
  // class by length, walked.
  std::vector<double> later_by_kind[5];
  int64_t tokens_total = 0, completed = 0;
  grammar::CompiledGrammar::MaskCounts after_first;
  for (int gen = 0; gen < generations; ++gen) {
    if (gen == 1) after_first = (*compiled)->mask_counts();
    grammar::GrammarMatcher matcher(*compiled);
    for (int step = 0; step < max_tokens && !matcher.is_terminated(); ++step) {
      const grammar::CompiledGrammar::MaskCounts before = (*compiled)->mask_counts();
      auto t = Clock::now();
      std::shared_ptr<const grammar::TokenSet> mask = matcher.allowed_tokens();
      const double mask_us = us_since(t);
      (gen == 0 ? first_mask : later_mask).push_back(mask_us);
      if (gen > 0) {
        const grammar::CompiledGrammar::MaskCounts after = (*compiled)->mask_counts();
        const int kind = after.computed == before.computed            ? 0
                         : after.by_text > before.by_text             ? 1
                         : after.by_plain_text > before.by_plain_text ? 2
                         : after.by_class > before.by_class           ? 3
                                                                      : 4;
        later_by_kind[kind].push_back(mask_us);
      }
      std::fill(logits.begin(), logits.end(), 0.0f);
      t = Clock::now();
      mask->apply(logits);
      apply_us.push_back(us_since(t));
      // Prefer closing structure now and then so that generations finish: a uniform pick inside a string
      // would rarely choose the closing quote.
      std::vector<int32_t> allowed;
      if (mask->rejected) {
        for (int32_t id = 0; id < vocab_size; ++id)
          if (logits[id] == 0.0f) allowed.push_back(id);
      } else {
        allowed = mask->ids;
      }
      if (allowed.empty()) break;
      int32_t pick = allowed[rng() % allowed.size()];
      if (rng() % 3 == 0)
        for (int32_t id : allowed)
          if (vocabulary->token_bytes(id).find_first_of("\"}],") != std::string::npos) {
            pick = id;
            break;
          }
      if (!matcher.accept_token(pick)) break;
      ++tokens_total;
    }
    completed += matcher.is_accepting();
  }
  std::printf("generations: %d (%lld reached a complete JSON), %lld tokens\n", generations,
              static_cast<long long>(completed), static_cast<long long>(tokens_total));
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0 : s / static_cast<double>(v.size());
  };
  std::printf("mask per token, first generation (cold): mean %.1f us, p50 %.1f us, p99 %.1f us\n", mean(first_mask),
              percentile(first_mask, 0.5), percentile(first_mask, 0.99));
  std::printf("mask per token, later generations (cached): mean %.2f us, p50 %.2f us, p99 %.1f us\n", mean(later_mask),
              percentile(later_mask, 0.5), percentile(later_mask, 0.99));
  std::printf("applying a mask to a 151936-logit row: mean %.1f us, p99 %.1f us\n", mean(apply_us),
              percentile(apply_us, 0.99));
  std::printf("cache: %d configurations, %d masks\n", (*compiled)->num_configs(), (*compiled)->num_cached_masks());
  // Where the later generations' mean comes from: the masks they still compute, and how.
  const grammar::CompiledGrammar::MaskCounts all = (*compiled)->mask_counts();
  if (generations < 2) after_first = all;
  std::printf(
      "masks computed in the first generation: %lld (%lld settled text by count, %lld plain text only, %lld a byte "
      "class)\n",
      static_cast<long long>(after_first.computed), static_cast<long long>(after_first.by_text),
      static_cast<long long>(after_first.by_plain_text), static_cast<long long>(after_first.by_class));
  const char* kinds[5] = {"cached", "computed, text by count", "computed, plain text by length",
                          "computed, a byte class by length", "computed, walked"};
  for (int k = 0; k < 5; ++k) {
    double total = 0;
    for (double x : later_by_kind[k]) total += x;
    std::printf("  later generations, %s: %zu masks, mean %.1f us, %.1f us per token of the later mean\n", kinds[k],
                later_by_kind[k].size(), mean(later_by_kind[k]),
                later_mask.empty() ? 0 : total / static_cast<double>(later_mask.size()));
  }
  return 0;
}
