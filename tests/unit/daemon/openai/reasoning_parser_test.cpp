#include "daemon/openai/reasoning_parser.h"

#include <gtest/gtest.h>

namespace bm::daemon::openai {
namespace {

ReasoningDelta feed_in_pieces(ReasoningParser& p, std::string_view text, size_t piece) {
  ReasoningDelta all;
  for (size_t i = 0; i < text.size(); i += piece) {
    ReasoningDelta d = p.push(text.substr(i, piece));
    all.reasoning += d.reasoning;
    all.content += d.content;
  }
  ReasoningDelta d = p.finish();
  all.reasoning += d.reasoning;
  all.content += d.content;
  return all;
}

TEST(ReasoningParserTest, PromptOpenedThinkOnlyClosingTagInOutput) {
  // DeepSeek-R1-Distill: the template ends with "<think>\n"; the model writes only "</think>".
  for (size_t piece : {1u, 2u, 3u, 7u, 100u}) {
    ReasoningParser p(/*starts_in_reasoning=*/true);
    ReasoningDelta d = feed_in_pieces(p, "Let me think. 2+2=4.\n</think>\n\nThe answer is 4.", piece);
    EXPECT_EQ(d.reasoning, "Let me think. 2+2=4.\n") << piece;
    EXPECT_EQ(d.content, "The answer is 4.") << piece;
  }
}

TEST(ReasoningParserTest, ModelOpensThinkItself) {
  for (size_t piece : {1u, 4u, 50u}) {
    ReasoningParser p(/*starts_in_reasoning=*/false);
    ReasoningDelta d = feed_in_pieces(p, "<think>\nhmm</think>\n\nyes", piece);
    EXPECT_EQ(d.reasoning, "hmm") << piece;
    EXPECT_EQ(d.content, "yes") << piece;
  }
}

TEST(ReasoningParserTest, NoThinkAtAllIsContent) {
  ReasoningParser p(false);
  ReasoningDelta d = feed_in_pieces(p, "plain answer <b>", 3);
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "plain answer <b>");
}

TEST(ReasoningParserTest, UnfinishedReasoningStaysReasoning) {
  ReasoningParser p(true);
  ReasoningDelta d = feed_in_pieces(p, "still thinking </thi", 4);
  EXPECT_EQ(d.reasoning, "still thinking </thi");
  EXPECT_EQ(d.content, "");
}

TEST(ReasoningParserTest, PartialCloseTagIsHeldBack) {
  ReasoningParser p(true);
  EXPECT_EQ(p.push("abc</th").reasoning, "abc");
  ReasoningDelta d = p.push("ink>done");
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "done");
}

TEST(ReasoningParserTest, DetectsPromptThatOpensThink) {
  EXPECT_TRUE(ReasoningParser::prompt_opens_reasoning("<｜User｜>hi<｜Assistant｜><think>\n"));
  EXPECT_FALSE(ReasoningParser::prompt_opens_reasoning("<think>a</think> b<｜Assistant｜>"));
  EXPECT_FALSE(ReasoningParser::prompt_opens_reasoning("<|im_start|>assistant\n"));
}

}  // namespace
}  // namespace bm::daemon::openai
