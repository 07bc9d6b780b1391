#include "daemon/openai/tool_call_parser.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace bm::daemon::openai {
namespace {

// A real Qwen2.5-7B-Instruct output shape for a weather question with two calls.
constexpr std::string_view kTwoCalls =
    "<tool_call>\n{\"name\": \"get_current_temperature\", \"arguments\": {\"location\": \"San Francisco, CA, USA\"}}\n"
    "</tool_call>\n<tool_call>\n{\"name\": \"get_temperature_date\", \"arguments\": {\"location\": \"San Francisco, "
    "CA, USA\", \"date\": \"2024-10-01\"}}\n</tool_call>";

ToolCallDelta stream(std::string_view text, size_t piece, std::string prefix = {}) {
  ToolCallParser p(std::move(prefix));
  ToolCallDelta all;
  for (size_t i = 0; i < text.size(); i += piece) {
    ToolCallDelta d = p.push(text.substr(i, piece));
    all.content += d.content;
    for (auto& c : d.calls) all.calls.push_back(c);
  }
  ToolCallDelta d = p.finish();
  all.content += d.content;
  for (auto& c : d.calls) all.calls.push_back(c);
  return all;
}

TEST(ToolCallParserTest, ParsesTwoCallsWholeAndStreamed) {
  for (size_t piece : {1u, 3u, 11u, 1000u}) {
    ToolCallDelta d = stream(kTwoCalls, piece);
    ASSERT_EQ(d.calls.size(), 2u) << piece;
    EXPECT_EQ(d.content, "") << piece;
    EXPECT_EQ(d.calls[0].name, "get_current_temperature");
    EXPECT_EQ(nlohmann::json::parse(d.calls[0].arguments)["location"], "San Francisco, CA, USA");
    EXPECT_EQ(nlohmann::json::parse(d.calls[1].arguments)["date"], "2024-10-01");
    EXPECT_EQ(d.calls[0].id.rfind("call_", 0), 0u);
    EXPECT_NE(d.calls[0].id, d.calls[1].id);
  }
  ToolCallDelta all = ToolCallParser::parse_all(kTwoCalls);
  EXPECT_EQ(all.calls.size(), 2u);
}

TEST(ToolCallParserTest, ContentBeforeCallIsKept) {
  ToolCallDelta d = stream("Let me check.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>", 5);
  EXPECT_EQ(d.content, "Let me check.\n");
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.calls[0].arguments, "{}");
}

TEST(ToolCallParserTest, InvalidJsonStaysContent) {
  std::string text = "<tool_call>\n{\"name\": \"f\", \"arguments\": {oops}\n</tool_call> after";
  ToolCallDelta d = stream(text, 4);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_EQ(d.content, text);
}

TEST(ToolCallParserTest, PlainTextWithAngleBrackets) {
  ToolCallDelta d = stream("a < b and <tool> is not <tool_call", 3);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_EQ(d.content, "a < b and <tool> is not <tool_call");
}

TEST(ToolCallParserTest, UnclosedCallWithCompleteJsonAtEnd) {
  ToolCallDelta d = stream("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n", 2);
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(d.calls[0].arguments)["x"], 1);
}

TEST(ToolCallParserTest, PrefixFromRequiredToolChoice) {
  ToolCallDelta d = stream("{\"name\": \"g\", \"arguments\": {\"q\": \"模型\"}}\n</tool_call>", 3, "<tool_call>\n");
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.calls[0].name, "g");
  EXPECT_EQ(nlohmann::json::parse(d.calls[0].arguments)["q"], "模型");
}

// vLLM's hermes parser returns json.dumps(arguments, ensure_ascii=False): the model's key order, Python's
// separators, unicode as is.
TEST(ToolCallParserTest, ArgumentsKeepTheModelsKeyOrderAsVllmDoes) {
  for (size_t piece : {1u, 7u, 1000u}) {
    ToolCallDelta d = stream(
        "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"z\": 1, \"a\": {\"y\":[true,null,2.50],\"b\":\"é<>\"}}}\n"
        "</tool_call>",
        piece);
    ASSERT_EQ(d.calls.size(), 1u);
    EXPECT_EQ(d.calls[0].arguments, R"({"z": 1, "a": {"y": [true, null, 2.5], "b": "é<>"}})") << piece;
  }
}

TEST(ToolCallParserTest, StringArgumentsPassThrough) {
  ToolCallDelta d =
      ToolCallParser::parse_all("<tool_call>{\"name\": \"h\", \"arguments\": \"{\\\"a\\\": 2}\"}</tool_call>");
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_EQ(d.calls[0].arguments, "{\"a\": 2}");
}

}  // namespace
}  // namespace bm::daemon::openai
