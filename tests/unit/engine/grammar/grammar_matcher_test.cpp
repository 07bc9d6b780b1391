#include "engine/grammar/grammar_matcher.h"

#include "engine/grammar/gbnf_parser.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/grammar/grammar_test_util.h"

namespace bm::engine::grammar {
namespace {

int32_t id_of(const TokenVocabulary& v, std::string_view bytes) {
  for (int32_t id = 0; id < v.vocab_size(); ++id)
    if (v.token_bytes(id) == bytes) return id;
  return -1;
}

TEST(GrammarMatcher, AcceptsRejectsRollsBackAndTerminates) {
  absl::StatusOr<Grammar> g = parse_gbnf(R"(root ::= "{" "\"" [a-z]+ "\"" "}")");
  ASSERT_TRUE(g.ok());
  GrammarMatcher m(testing::compile_or_die(*g));
  const TokenVocabulary& v = m.grammar().vocabulary();
  EXPECT_FALSE(m.accept_token(id_of(v, "\"")));  // refused: nothing changes
  EXPECT_EQ(m.num_accepted(), 0);
  EXPECT_TRUE(m.accept_token(id_of(v, "{\"")));
  EXPECT_TRUE(m.accept_token(id_of(v, "abc")));
  EXPECT_FALSE(m.is_accepting());
  EXPECT_FALSE(m.accept_end());
  EXPECT_TRUE(m.allowed_tokens()->allows(id_of(v, "\"}")));
  EXPECT_FALSE(m.allowed_tokens()->allows(id_of(v, "\",")));
  EXPECT_TRUE(m.accept_token(id_of(v, "\"}")));
  EXPECT_TRUE(m.is_accepting());
  EXPECT_TRUE(m.is_terminated());  // nothing may follow
  EXPECT_EQ(m.allowed_tokens()->num_allowed, 0);
  m.rollback(2);
  EXPECT_EQ(m.num_accepted(), 1);
  EXPECT_FALSE(m.is_accepting());
  EXPECT_TRUE(m.accept_token(id_of(v, "ab")));
  EXPECT_TRUE(m.accept_token(id_of(v, "\"")));
  EXPECT_TRUE(m.accept_token(id_of(v, "}")));
  EXPECT_TRUE(m.accept_end());
  EXPECT_TRUE(m.is_terminated());
  EXPECT_FALSE(m.accept_token(id_of(v, "}")));
  m.rollback(1);
  EXPECT_TRUE(m.is_accepting());
}

TEST(GrammarMatcher, AcceptingButOpenAllowsMore) {
  absl::StatusOr<Grammar> g = parse_gbnf(R"(root ::= [0-9]+)");
  ASSERT_TRUE(g.ok());
  GrammarMatcher m(testing::compile_or_die(*g));
  const TokenVocabulary& v = m.grammar().vocabulary();
  EXPECT_TRUE(m.accept_token(id_of(v, "12")));
  EXPECT_TRUE(m.is_accepting());
  EXPECT_FALSE(m.is_terminated());
  EXPECT_TRUE(m.allowed_tokens()->allows(id_of(v, "7")));
  EXPECT_FALSE(m.accept_token(-1));
  EXPECT_FALSE(m.accept_token(v.vocab_size() - 1));  // an id past the tokenizer: no bytes
}

}  // namespace
}  // namespace bm::engine::grammar
