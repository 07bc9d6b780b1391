// Walks a grammar with random allowed tokens and prints, per step, the allowed-token bitmask and the token taken:
// the input of the XGrammar oracle test (tests/e2e/test_xgrammar_oracle.py), which replays the same tokens through
// XGrammar's matcher and compares its masks with these.
//
// Usage: bm_grammar_walk MODEL_DIR SCHEMA_FILE [--seed N] [--steps N] [--whitespace REGEX]
// Output: one line per step, "<token id or -1 at the end> <bitmask words, 8 hex digits each>"; special tokens are
// never in the mask (end-of-sequence is the sampler's).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/grammar/grammar_matcher.h"
#include "engine/grammar/grammar_request.h"
#include "engine/tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  using namespace bm::engine;
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR SCHEMA_FILE [--seed N] [--steps N] [--whitespace REGEX]\n", argv[0]);
    return 2;
  }
  uint64_t seed = 1;
  int steps = 40;
  std::optional<std::string> whitespace;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--seed")) seed = std::strtoull(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--whitespace")) whitespace = argv[i + 1];
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::load(argv[1]);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", std::string(tokenizer.status().message()).c_str());
    return 1;
  }
  std::ifstream in(argv[2]);
  std::stringstream text;
  text << in.rdbuf();
  auto vocabulary = grammar::TokenVocabulary::from_tokenizer(**tokenizer, (*tokenizer)->vocab_size());
  absl::StatusOr<grammar::Grammar> g =
      grammar::build_grammar({grammar::GrammarKind::kJsonSchema, text.str(), {}, whitespace});
  absl::StatusOr<std::shared_ptr<const grammar::CompiledGrammar>> compiled =
      g.ok() ? grammar::CompiledGrammar::compile(*g, vocabulary) : g.status();
  if (!compiled.ok()) {
    std::fprintf(stderr, "%s\n", std::string(compiled.status().message()).c_str());
    return 1;
  }
  grammar::GrammarMatcher matcher(*compiled);
  std::mt19937_64 rng(seed);
  std::vector<uint32_t> words(static_cast<size_t>(vocabulary->vocab_size() + 31) / 32);
  for (int step = 0; step < steps && !matcher.is_terminated(); ++step) {
    std::shared_ptr<const grammar::TokenSet> mask = matcher.allowed_tokens();
    mask->fill_bitmask(words);
    std::vector<int32_t> allowed;
    for (int32_t id = 0; id < vocabulary->vocab_size(); ++id)
      if ((words[id / 32] >> (id % 32)) & 1) allowed.push_back(id);
    int32_t pick = -1;
    if (!allowed.empty()) {
      pick = allowed[rng() % allowed.size()];
      // Now and then a token that closes something, so the walk gets past long strings.
      if (rng() % 2 == 0)
        for (size_t k = 0, start = rng() % allowed.size(); k < allowed.size(); ++k) {
          const int32_t id = allowed[(start + k) % allowed.size()];
          if (vocabulary->token_bytes(id).find_first_of("\"}],") != std::string::npos) {
            pick = id;
            break;
          }
        }
    }
    std::printf("%d ", pick);
    for (uint32_t w : words) std::printf("%08x", w);
    std::printf("\n");
    if (pick < 0 || !matcher.accept_token(pick)) break;
  }
  return 0;
}
