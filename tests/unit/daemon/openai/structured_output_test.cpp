#include "daemon/openai/structured_output.h"

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace bm::daemon::openai {
namespace {

using engine::grammar::GrammarKind;
using ::testing::HasSubstr;

std::optional<StructuredOutput> parse(const std::string& body) {
  auto r = parse_structured_output(nlohmann::json::parse(body));
  EXPECT_TRUE(std::holds_alternative<std::optional<StructuredOutput>>(r))
      << body << ": " << std::get<ApiError>(r).message;
  return std::holds_alternative<std::optional<StructuredOutput>>(r) ? std::get<0>(r) : std::nullopt;
}

ApiError error_of(const std::string& body) {
  auto r = parse_structured_output(nlohmann::json::parse(body));
  EXPECT_TRUE(std::holds_alternative<ApiError>(r)) << body;
  return std::holds_alternative<ApiError>(r) ? std::get<ApiError>(r) : ApiError{};
}

TEST(StructuredOutput, ReadsEveryForm) {
  EXPECT_FALSE(parse("{}").has_value());
  EXPECT_FALSE(parse(R"({"response_format": {"type": "text"}})").has_value());
  EXPECT_EQ(parse(R"({"response_format": {"type": "json_object"}})")->request.kind, GrammarKind::kJsonObject);
  auto schema = parse(R"({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": true,
                          "schema": {"type": "object"}}}})");
  EXPECT_EQ(schema->request.kind, GrammarKind::kJsonSchema);
  EXPECT_EQ(schema->request.text, R"({"type":"object"})");
  EXPECT_EQ(schema->param, "response_format");
  EXPECT_EQ(parse(R"({"guided_json": "{\"type\": \"integer\"}"})")->request.text, R"({"type": "integer"})");
  EXPECT_EQ(parse(R"({"guided_regex": "a+"})")->request.kind, GrammarKind::kRegex);
  auto choice = parse(R"({"guided_choice": ["yes", "no"]})");
  EXPECT_EQ(choice->request.choices, (std::vector<std::string>{"yes", "no"}));
  EXPECT_EQ(choice->param, "guided_choice");
  EXPECT_EQ(parse(R"({"guided_grammar": "root ::= \"a\""})")->request.kind, GrammarKind::kGbnf);
  auto ws = parse(R"({"guided_json": {"type": "object"}, "guided_whitespace_pattern": "[ ]?"})");
  EXPECT_EQ(ws->request.whitespace_pattern, "[ ]?");
  EXPECT_FALSE(parse(R"({"guided_json": null, "response_format": null})").has_value());
}

TEST(StructuredOutput, ConflictsAndBadFieldsAreNamed) {
  ApiError e = error_of(R"({"response_format": {"type": "json_object"}, "guided_regex": "a"})");
  EXPECT_EQ(e.param, "guided_regex");
  EXPECT_THAT(e.message, HasSubstr("send only one"));
  EXPECT_EQ(error_of(R"({"guided_choice": ["a"], "guided_regex": "a"})").param, "guided_choice");
  EXPECT_EQ(error_of(R"({"response_format": {"type": "xml"}})").param, "response_format");
  EXPECT_EQ(error_of(R"({"response_format": {"type": "json_schema"}})").param, "response_format");
  EXPECT_EQ(error_of(R"({"response_format": "json"})").param, "response_format");
  EXPECT_EQ(error_of(R"({"guided_json": "{not json"})").param, "guided_json");
  EXPECT_EQ(error_of(R"({"guided_json": 5})").param, "guided_json");
  EXPECT_EQ(error_of(R"({"guided_choice": []})").param, "guided_choice");
  EXPECT_EQ(error_of(R"({"guided_choice": ["a", 1]})").param, "guided_choice");
  EXPECT_EQ(error_of(R"({"guided_regex": ""})").param, "guided_regex");
  EXPECT_EQ(error_of(R"({"guided_whitespace_pattern": " "})").param, "guided_whitespace_pattern");
  EXPECT_EQ(error_of(R"({"guided_regex": "a", "guided_whitespace_pattern": " "})").param, "guided_whitespace_pattern");
}

TEST(StructuredOutput, ToolCallsTakeEachToolsParameters) {
  auto tools = nlohmann::json::parse(R"([{"type": "function", "function": {"name": "a", "parameters":
      {"type": "object", "properties": {"x": {"type": "integer"}}}}}, {"type": "function", "function": {"name": "b"}}])");
  auto all = std::get<engine::grammar::GrammarRequest>(tool_call_grammar(tools, "", true));
  ASSERT_EQ(all.tools.size(), 2u);
  EXPECT_EQ(all.tools[1].parameters, R"({"type": "object", "properties": {}})");
  EXPECT_FALSE(all.tool_name_given);
  EXPECT_TRUE(all.parallel_calls);
  EXPECT_FALSE(std::get<engine::grammar::GrammarRequest>(tool_call_grammar(tools, "", false)).parallel_calls);
  auto named = std::get<engine::grammar::GrammarRequest>(tool_call_grammar(tools, "b", true));
  EXPECT_FALSE(named.parallel_calls);  // a named function is one call
  ASSERT_EQ(named.tools.size(), 1u);
  EXPECT_EQ(named.tools[0].name, "b");
  EXPECT_TRUE(named.tool_name_given);
}

}  // namespace
}  // namespace bm::daemon::openai
