#include "engine/grammar/regex_converter.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/grammar/grammar_test_util.h"

namespace bm::engine::grammar {
namespace {

using ::testing::HasSubstr;
using testing::matches;

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> regex(std::string_view pattern, bool json = false) {
  Grammar g;
  const int32_t root = g.add_rule("root");
  absl::StatusOr<int32_t> e = regex_to_expr(g, pattern, RegexOptions{.json_string = json});
  if (!e.ok()) return e.status();
  g.set_body(root, *e);
  g.set_root(root);
  return CompiledGrammar::compile(g, testing::byte_vocabulary());
}

struct Case {
  const char* pattern;
  std::vector<const char*> yes;
  std::vector<const char*> no;
};

TEST(RegexConverter, FullMatchesAsPythonWould) {
  const std::vector<Case> cases = {
      {R"(\d{3}-\d{4})", {"555-1234"}, {"55-1234", "5555-1234", "555-12345", "abc-defg"}},
      {R"(^[A-Z][a-z]+$)", {"Hello", "Ab"}, {"hello", "A", "Hello!"}},
      {R"((cat|dog)s?)", {"cat", "dogs"}, {"cats!", "bird", ""}},
      {R"(a{2,})", {"aa", "aaaaa"}, {"a", ""}},
      {R"(a{,2})", {"", "a", "aa"}, {"aaa"}},  // Python's {,n}
      {R"(x*?y+?)", {"y", "xxyy"}, {"x"}},
      {R"([^\d\s]+)", {"abc", "é"}, {"a1", "a b"}},
      {R"(\w+@\w+\.com)", {"me@site.com"}, {"me@site.org", "@site.com"}},
      {R"((?:ab)+(?P<tail>c|d))", {"ababc", "abd"}, {"abab", "c"}},
      {R"(.\..)", {"a.b", "é.x"}, {"a\nb", "a.\n"}},
      {R"([\-+]?[0-9a-fA-F]+)", {"-ff", "+0A", "9"}, {"-", "g"}},
      {R"(\u00e9\x41)", {"éA"}, {"eA"}},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::shared_ptr<const CompiledGrammar>> g = regex(c.pattern);
    ASSERT_TRUE(g.ok()) << c.pattern << ": " << g.status();
    for (const char* s : c.yes) EXPECT_TRUE(matches(**g, s)) << c.pattern << " should match " << s;
    for (const char* s : c.no) EXPECT_FALSE(matches(**g, s)) << c.pattern << " should not match " << s;
  }
}

TEST(RegexConverter, JsonStringModeWritesEscapes) {
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> g = regex(R"(a"b\\c\n[^a-z]?)", /*json=*/true);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(matches(**g, R"(a\"b\\c\n)"));
  EXPECT_TRUE(matches(**g, R"(a\"b\\c\n\t)"));
  EXPECT_TRUE(matches(**g, R"(a\"b\\c\n\u0001)"));
  EXPECT_TRUE(matches(**g, R"(a\"b\\c\n\")"));
  EXPECT_FALSE(matches(**g, "a\"b\\c\n"));  // raw quote, backslash and newline are not JSON string content
}

TEST(RegexConverter, NestingIsBounded) {
  EXPECT_TRUE(regex(std::string(200, '(') + "a" + std::string(200, ')')).ok());
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> deep =
      regex(std::string(300, '(') + "a" + std::string(300, ')'));
  ASSERT_FALSE(deep.ok());
  EXPECT_THAT(std::string(deep.status().message()), HasSubstr("nested deeper than 256"));
}

TEST(RegexConverter, UnsupportedConstructsAreNamed) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {R"((a)\1)", "backreference"},
      {R"((?=a)b)", "lookaround"},
      {R"(\bword)", "word boundary"},
      {R"(a++)", "possessive"},
      {R"(a{2000})", "repetition count"},
      {R"((ab)", "unterminated group"},
      {R"([abc)", "unterminated character class"},
      {R"(ab)c)", "unmatched ')'"},
      {R"(*a)", "nothing to repeat"},
      {R"(a^b)", "'^' after the start"},
      {R"([[:alpha:]])", "POSIX class"},
      {R"(a**)", "multiple repeat"},
      {R"(\p{L})", "escape \\p"},
  };
  for (const auto& [pattern, what] : cases) {
    absl::StatusOr<std::shared_ptr<const CompiledGrammar>> g = regex(pattern);
    ASSERT_FALSE(g.ok()) << pattern;
    EXPECT_THAT(std::string(g.status().message()), HasSubstr(what)) << pattern;
    EXPECT_THAT(std::string(g.status().message()), HasSubstr(pattern)) << pattern;
  }
}

}  // namespace
}  // namespace bm::engine::grammar
