#include "engine/grammar/compiled_grammar.h"

#include <limits>
#include <random>

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
