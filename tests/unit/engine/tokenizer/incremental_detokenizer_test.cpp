#include "engine/tokenizer/incremental_detokenizer.h"

#include <random>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/tokenizer/corpus.h"
#include "tests/unit/engine/tokenizer/tokenizer_test_util.h"

namespace bm::engine {
namespace {

// Streams `ids`; checks every piece is valid UTF-8 and the pieces add up to decode().
void check_stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip, const std::string& what) {
  IncrementalDetokenizer detok(tok, skip);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string piece = detok.push(id);
    ASSERT_TRUE(utf8::is_valid(piece)) << what;
    streamed += piece;
  }
  const std::string rest = detok.flush();
  ASSERT_TRUE(utf8::is_valid(rest)) << what;
  streamed += rest;
  ASSERT_EQ(streamed, tok.decode(ids, skip)) << what;
}

TEST(IncrementalDetokenizerTest, HoldsBackOnlyAnUnfinishedCharacter) {
  BM_REQUIRE_TOKENIZER(tok, testing::qwen_tokenizer);
  // "你" = e4 bd a0, fed as three byte tokens.
  const int32_t e4 = *tok->token_to_id("ä");
  const int32_t bd = *tok->token_to_id("½");
  const int32_t a0 = *tok->token_to_id("ł");  // byte 0xA0 is outside printable Latin-1
  IncrementalDetokenizer detok(*tok, false);
  EXPECT_EQ(detok.push(*tok->token_to_id("a")), "a");
  EXPECT_EQ(detok.push(e4), "");
  EXPECT_EQ(detok.push(bd), "");
  EXPECT_EQ(detok.push(a0), "\u4F60");
  EXPECT_EQ(detok.flush(), "");
}

TEST(IncrementalDetokenizerTest, BrokenSequencesBecomeReplacementCharacters) {
  BM_REQUIRE_TOKENIZER(tok, testing::qwen_tokenizer);
  const int32_t e4 = *tok->token_to_id("ä");
  IncrementalDetokenizer detok(*tok, false);
  EXPECT_EQ(detok.push(e4), "");
  EXPECT_EQ(detok.push(*tok->token_to_id("a")),
            "\uFFFD"
            "a");  // the character was never finished
  EXPECT_EQ(detok.push(e4), "");
  EXPECT_EQ(detok.flush(), "\uFFFD");  // an unfinished character at the end
}

TEST(IncrementalDetokenizerTest, SkipsSpecialTokensWhenAsked) {
  BM_REQUIRE_TOKENIZER(tok, testing::qwen_tokenizer);
  IncrementalDetokenizer skip(*tok, true);
  IncrementalDetokenizer keep(*tok, false);
  EXPECT_EQ(skip.push(151645), "");
  EXPECT_EQ(keep.push(151645), "<|im_end|>");
  EXPECT_EQ(skip.push(151657), "<tool_call>");  // added but not special
}

TEST(IncrementalDetokenizerTest, StreamsEqualFullDecodeOnCorpus) {
  BM_REQUIRE_TOKENIZER(tok, testing::qwen_tokenizer);
  const std::vector<std::string> records = testing::corpus_records();
  for (size_t i = 0; i < records.size(); i += 3) {
    const std::vector<int32_t> ids = tok->encode(records[i], false);
    check_stream(*tok, ids, false, "record " + std::to_string(i));
    check_stream(*tok, ids, true, "record " + std::to_string(i) + " skipping specials");
  }
}

// Arbitrary id sequences, biased to byte tokens so that characters break across tokens and never finish.
TEST(IncrementalDetokenizerTest, StreamsEqualFullDecodeOnRandomIds) {
  for (auto getter : {testing::qwen_tokenizer, testing::llama_tokenizer}) {
    BM_REQUIRE_TOKENIZER(tok, getter);
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> any_id(-2, tok->vocab_size() + 2);
    std::uniform_int_distribution<int> byte(0, 255);
    for (int round = 0; round < 300; ++round) {
      std::vector<int32_t> ids;
      for (int n = 0; n < 40; ++n) {
        if (rng() % 2 == 0) {
          ids.push_back(tok->encode(std::string(1, static_cast<char>(byte(rng))), false).at(0));
        } else {
          ids.push_back(any_id(rng));
        }
      }
      check_stream(*tok, ids, round % 2 == 0, "round " + std::to_string(round));
    }
  }
}

}  // namespace
}  // namespace bm::engine
