#include "engine/grammar/gbnf_parser.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/grammar/grammar_test_util.h"

namespace bm::engine::grammar {
namespace {

using testing::compile_or_die;
using ::testing::HasSubstr;
using testing::is_prefix;
using testing::matches;

std::shared_ptr<const CompiledGrammar> gbnf(std::string_view text) {
  absl::StatusOr<Grammar> g = parse_gbnf(text);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? compile_or_die(*g) : nullptr;
}

std::string error_of(std::string_view text) {
  absl::StatusOr<Grammar> g = parse_gbnf(text);
  if (!g.ok()) return std::string(g.status().message());
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c = CompiledGrammar::compile(*g, testing::byte_vocabulary());
  return c.ok() ? "" : std::string(c.status().message());
}

TEST(GbnfParser, LiteralsClassesAndQuantifiers) {
  auto c = gbnf(R"(
    # a comment
    root ::= "ab" [0-9]+ ("x" | "yz")? [^a-c]{2,3} "\n"
  )");
  EXPECT_TRUE(matches(*c, "ab1xzz\n"));
  EXPECT_TRUE(matches(*c, "ab123yzddd\n"));
  EXPECT_FALSE(matches(*c, "ab\n"));       // [0-9]+ needs a digit
  EXPECT_FALSE(matches(*c, "ab1aa\n"));    // [^a-c]
  EXPECT_FALSE(matches(*c, "ab1dddd\n"));  // at most 3
  EXPECT_FALSE(matches(*c, "ab1xzz"));     // the newline is required
  EXPECT_TRUE(is_prefix(*c, "ab1xzz"));
}

TEST(GbnfParser, RulesSpanLinesAndRecurse) {
  auto c = gbnf(R"g(
root ::= expr
expr ::=
    term ("+" term)*
term ::= [0-9] | "(" expr ")"
)g");
  EXPECT_TRUE(matches(*c, "1+2"));
  EXPECT_TRUE(matches(*c, "((1+(2)))+3"));
  EXPECT_FALSE(matches(*c, "((1)"));
  EXPECT_FALSE(matches(*c, "1+"));
  EXPECT_FALSE(is_prefix(*c, "1)"));
}

TEST(GbnfParser, UnicodeEscapesAndAnyCharacter) {
  auto c = gbnf(R"g(root ::= "\u00e9" [α-ω] . "\x41")g");
  EXPECT_TRUE(matches(*c, "éβ中A"));
  EXPECT_TRUE(matches(*c, "éωxA"));
  EXPECT_FALSE(matches(*c, "eβxA"));
  EXPECT_FALSE(matches(*c, "éAxA"));
}

TEST(GbnfParser, ErrorsNameTheProblem) {
  EXPECT_THAT(error_of("root ::= \"abc"), HasSubstr("line 1, column 14"));
  EXPECT_THAT(error_of("root ::= \"abc"), HasSubstr("closing the string literal"));
  EXPECT_THAT(error_of("root ::= foo"), HasSubstr("rule 'foo' is used but never defined"));
  EXPECT_THAT(error_of("start ::= \"a\""), HasSubstr("no 'root' rule"));
  EXPECT_THAT(error_of("root ::= \"a\"\nroot ::= \"b\""), HasSubstr("defined twice"));
  EXPECT_THAT(error_of("root ::= [a-"), HasSubstr("expected"));
  EXPECT_THAT(error_of("root ::= <[1000]>"), HasSubstr("token references"));
  EXPECT_THAT(error_of("root ::= \"a\"{3,1}"), HasSubstr("m <= n"));
  EXPECT_THAT(error_of("root ::= expr\nexpr ::= expr \"+\" \"1\" | \"1\""), HasSubstr("left-recursive (expr -> expr"));
  EXPECT_THAT(error_of(""), HasSubstr("empty"));
}

// Input that would make the parser or the compiler recurse without bound is refused; long rule chains in
// either order compile (the left-recursion check walks each rule once and recurses on nothing).
TEST(GbnfParser, NestingAndChainsAreBounded) {
  EXPECT_THAT(error_of("root ::= " + std::string(300, '(') + "\"a\"" + std::string(300, ')')),
              HasSubstr("nested at most 256"));
  EXPECT_EQ(error_of("root ::= " + std::string(200, '(') + "\"a\"" + std::string(200, ')')), "");
  EXPECT_THAT(error_of("root ::= \"a\"**"), HasSubstr("one quantifier per item"));
  for (bool forward : {true, false}) {
    std::string text = "root ::= r0\n";
    const int n = 5000;
    for (int k = 0; k < n; ++k) {
      const int i = forward ? k : n - 1 - k;
      text += "r" + std::to_string(i) + " ::= " + (i + 1 < n ? "r" + std::to_string(i + 1) + " " : "") + "\"\"?\n";
    }
    text += "";
    EXPECT_EQ(error_of(text + "r" + std::to_string(n) + " ::= \"x\"\n"), "") << forward;
  }
}

TEST(GbnfParser, NullableLeftCallIsStillLeftRecursion) {
  EXPECT_THAT(error_of("root ::= a\na ::= b a \"x\" | \"y\"\nb ::= \"z\"?"), HasSubstr("left-recursive"));
  // Right recursion is fine.
  EXPECT_EQ(error_of("root ::= \"x\" root | \"y\""), "");
}

}  // namespace
}  // namespace bm::engine::grammar
