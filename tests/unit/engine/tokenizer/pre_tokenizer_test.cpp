#include "engine/tokenizer/pre_tokenizer.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace bm::engine {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> split(SplitPattern pattern, std::string_view text) {
  std::vector<std::string_view> pieces;
  pre_tokenize(pattern, text, pieces);
  return {pieces.begin(), pieces.end()};
}

std::vector<std::string> qwen(std::string_view text) {
  return split(SplitPattern::kQwen2, text);
}
std::vector<std::string> llama(std::string_view text) {
  return split(SplitPattern::kLlama3, text);
}

// Expected pieces are what Hugging Face's Split(pattern, "isolated") produces.
TEST(PreTokenizerTest, WordsContractionsAndSpaces) {
  EXPECT_THAT(qwen("Hello world"), ElementsAre("Hello", " world"));
  EXPECT_THAT(qwen("I'm HE'LL we'Re"), ElementsAre("I", "'m", " HE", "'LL", " we", "'Re"));
  EXPECT_THAT(qwen("a'\u017Fb"), ElementsAre("a", "'\u017F", "b"));  // long s folds to s
  EXPECT_THAT(qwen("  hello"), ElementsAre(" ", " hello"));
  EXPECT_THAT(qwen("a\n\n b"), ElementsAre("a", "\n\n", " b"));
  EXPECT_THAT(qwen("x   "), ElementsAre("x", "   "));
  EXPECT_THAT(qwen("\t("), ElementsAre("\t", "("));
  EXPECT_THAT(qwen(" !!!\n\nz"), ElementsAre(" !!!\n\n", "z"));
  EXPECT_THAT(qwen("hello\r\n"), ElementsAre("hello", "\r\n"));
  EXPECT_THAT(qwen("a  \n  b"), ElementsAre("a", "  \n", " ", " b"));
  EXPECT_THAT(qwen("(word) 'tis"), ElementsAre("(word", ")", " '", "tis"));
  EXPECT_THAT(qwen("$$$ \n"), ElementsAre("$$$", " \n"));
  EXPECT_THAT(qwen("\u00A0\u00A0x"), ElementsAre("\u00A0", "\u00A0x"));
  EXPECT_THAT(qwen(" \u3000word"), ElementsAre(" ", "\u3000word"));
  EXPECT_THAT(qwen("\u4E2D\u6587\uFF0C\u5B57 \u00E9a\u0301"),
              ElementsAre("\u4E2D\u6587", "\uFF0C\u5B57", " \u00E9a", "\u0301"));
  EXPECT_TRUE(qwen("").empty());
}

TEST(PreTokenizerTest, DigitsSingleForQwenUpToThreeForLlama) {
  EXPECT_THAT(qwen("12345 x"), ElementsAre("1", "2", "3", "4", "5", " x"));
  EXPECT_THAT(llama("12345 x"), ElementsAre("123", "45", " x"));
  EXPECT_THAT(qwen("ab12cd"), ElementsAre("ab", "1", "2", "cd"));
  EXPECT_THAT(llama("ab12cd"), ElementsAre("ab", "12", "cd"));
  EXPECT_THAT(llama("\u0663\u0664\u0665\u0666 \u216Bx"),
              ElementsAre("\u0663\u0664\u0665", "\u0666", " ", "\u216B", "x"));
}

TEST(PreTokenizerTest, RecognisesTheTwoPatterns) {
  EXPECT_EQ(
      split_pattern_from_regex(
          R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"),
      SplitPattern::kQwen2);
  EXPECT_EQ(
      split_pattern_from_regex(
          R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"),
      SplitPattern::kLlama3);
  EXPECT_EQ(split_pattern_from_regex(R"(\w+)"), std::nullopt);
}

}  // namespace
}  // namespace bm::engine
