#include "engine/grammar/compiled_grammar.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "engine/grammar/gbnf_parser.h"
#include "engine/grammar/json_schema_converter.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/grammar/grammar_test_util.h"

namespace bm::engine::grammar {
namespace {

using ::testing::HasSubstr;

// The mask from the trie walk equals advancing the configuration by each token's bytes on its own, along random
// walks through the grammar (recursion, repetition, Unicode, multi-byte tokens).
TEST(CompiledGrammar, TrieMaskEqualsTokenByTokenCheck) {
  absl::StatusOr<Grammar> g = json_schema_to_grammar(
      R"({"type": "object", "properties": {"name": {"type": "string", "maxLength": 5},
          "tags": {"type": "array", "items": {"enum": ["a", "b\"c"]}}, "n": {"type": "integer", "minimum": -3},
          "child": {"$ref": "#"}}, "required": ["name"]})");
  ASSERT_TRUE(g.ok()) << g.status();
  auto c = testing::compile_or_die(*g);
  const TokenVocabulary& v = c->vocabulary();
  std::mt19937 rng(7);
  for (int walk = 0; walk < 20; ++walk) {
    int32_t config = c->start();
    for (int step = 0; step < 60 && c->can_continue(config); ++step) {
      std::shared_ptr<const TokenSet> mask = c->allowed_tokens(config);
      std::vector<int32_t> allowed;
      for (int32_t id = 0; id < v.vocab_size(); ++id) {
        const bool ok = !v.token_bytes(id).empty() && c->advance(config, v.token_bytes(id)) != CompiledGrammar::kDead;
        EXPECT_EQ(mask->allows(id), ok) << "token " << id << " '" << v.token_bytes(id) << "' at step " << step;
        if (ok) allowed.push_back(id);
      }
      EXPECT_EQ(mask->num_allowed, static_cast<int32_t>(allowed.size()));
      ASSERT_FALSE(allowed.empty());
      config = c->advance(config, v.token_bytes(allowed[rng() % allowed.size()]));
    }
  }
  EXPECT_GT(c->num_cached_masks(), 0);
}

// A vocabulary with many multi-byte tokens: every byte, then seeded random strings over plain text, JSON
// punctuation, escapes, UTF-8 characters and their fragments, 1 to 24 bytes long (long plain runs reach the counted
// bounds of maxLength and the formats' {m,n}).
std::shared_ptr<const TokenVocabulary> mixed_vocabulary() {
  std::vector<std::string> bytes(256);
  for (int b = 1; b < 256; ++b) bytes[b] = std::string(1, static_cast<char>(b));
  const std::vector<std::string> pieces = {"a",
                                           "b",
                                           "Z",
                                           "0",
                                           "7",
                                           " ",
                                           "-",
                                           ".",
                                           "@",
                                           "_",
                                           "+",
                                           ":",
                                           "/",
                                           "T",
                                           "\"",
                                           "\\",
                                           "\\n",
                                           "\\u00",
                                           ",",
                                           "{",
                                           "}",
                                           "[",
                                           "]",
                                           "\n",
                                           "\xc3\xa9",
                                           "\xe4\xb8\xad",
                                           "\xf0\x9f\x98\x80",
                                           "\xc3",
                                           "\xa9",
                                           "\x1f",
                                           "e",
                                           "x"};
  std::mt19937 rng(11);
  for (int i = 0; i < 2500; ++i) {
    std::string t;
    const size_t length = 1 + rng() % 24;
    // Mostly plain text, as in a real vocabulary.
    while (t.size() < length) t += rng() % 3 ? pieces[rng() % 14] : pieces[rng() % pieces.size()];
    bytes.push_back(t);
  }
  const int32_t n = static_cast<int32_t>(bytes.size());
  return std::make_shared<const TokenVocabulary>(std::move(bytes), n + 3);
}

// The mask allowed_tokens() returns (plain text settled by length) is the full trie walk's, bit for bit, and both
// equal advancing by each token on its own, at every step of seeded random walks through every schema of the
// structured-output corpus.
TEST(CompiledGrammar, MaskEqualsFullWalkAndTokenByTokenOverCorpus) {
  const char* source = std::getenv("BMSERVER_SOURCE_DIR");
  ASSERT_NE(source, nullptr);
  const std::filesystem::path dir = std::filesystem::path(source) / "tests/data/structured_output/schemas";
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 100u);
  std::shared_ptr<const TokenVocabulary> vocabulary = mixed_vocabulary();
  const TokenVocabulary& v = *vocabulary;
  std::mt19937 rng(2026);
  int64_t steps_checked = 0;
  for (const auto& file : files) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<Grammar> g = json_schema_to_grammar(text.str());
    if (!g.ok()) continue;  // refused schemas are the converter's tests
    absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c = CompiledGrammar::compile(*g, vocabulary);
    ASSERT_TRUE(c.ok()) << file << ": " << c.status();
    for (int walk = 0; walk < 3; ++walk) {
      int32_t config = (*c)->start();
      for (int step = 0; step < 40 && (*c)->can_continue(config); ++step) {
        std::shared_ptr<const TokenSet> mask = (*c)->allowed_tokens(config);
        std::shared_ptr<const TokenSet> reference = (*c)->allowed_tokens_by_full_walk(config);
        ASSERT_EQ(mask->rejected, reference->rejected) << file << " walk " << walk << " step " << step;
        ASSERT_EQ(mask->ids, reference->ids) << file << " walk " << walk << " step " << step;
        ASSERT_EQ(mask->num_allowed, reference->num_allowed) << file << " walk " << walk << " step " << step;
        std::vector<int32_t> allowed;
        for (int32_t id = 0; id < v.vocab_size(); ++id) {
          const bool ok =
              !v.token_bytes(id).empty() && (*c)->advance(config, v.token_bytes(id)) != CompiledGrammar::kDead;
          ASSERT_EQ(mask->allows(id), ok) << file << " token '" << v.token_bytes(id) << "' at step " << step;
          if (ok) allowed.push_back(id);
        }
        ++steps_checked;
        if (allowed.empty()) break;
        // Long tokens now and then, so that walks reach the counted bounds.
        int32_t pick = allowed[rng() % allowed.size()];
        for (int tries = 0; tries < 4 && v.token_bytes(pick).size() < 8; ++tries)
          pick = allowed[rng() % allowed.size()];
        config = (*c)->advance(config, v.token_bytes(pick));
      }
    }
  }
  EXPECT_GT(steps_checked, 3000);
}

TEST(CompiledGrammar, MaskAppliesToLogitsAndBitmask) {
  absl::StatusOr<Grammar> g = parse_gbnf(R"(root ::= "ab" | "abc" | "x")");
  ASSERT_TRUE(g.ok());
  auto c = testing::compile_or_die(*g);
  std::shared_ptr<const TokenSet> mask = c->allowed_tokens(c->start());
  const int32_t vocab = c->vocabulary().vocab_size();
  std::vector<float> logits(static_cast<size_t>(vocab) + 5, 1.0f);  // a row wider than the tokenizer
  mask->apply(logits);
  std::vector<uint32_t> words((logits.size() + 31) / 32);
  mask->fill_bitmask(words);
  for (int32_t id = 0; id < static_cast<int32_t>(logits.size()); ++id) {
    const bool allowed = id < vocab && !c->vocabulary().token_bytes(id).empty() &&
                         (c->vocabulary().token_bytes(id) == "a" || c->vocabulary().token_bytes(id) == "x" ||
                          c->vocabulary().token_bytes(id) == "ab" || c->vocabulary().token_bytes(id) == "abc");
    EXPECT_EQ(logits[id] == 1.0f, allowed) << id;
    EXPECT_EQ(static_cast<bool>((words[id / 32] >> (id % 32)) & 1), allowed) << id;
  }
}

TEST(CompiledGrammar, SizeLimitIsAnError) {
  absl::StatusOr<Grammar> g = parse_gbnf(R"(root ::= ("a"{1000}){1000})");
  ASSERT_TRUE(g.ok());
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c =
      CompiledGrammar::compile(*g, testing::byte_vocabulary(), CompileLimits{.max_states = 100000});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("too large"));
}

}  // namespace
}  // namespace bm::engine::grammar
