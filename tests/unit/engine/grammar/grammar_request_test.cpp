#include "engine/grammar/grammar_request.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/grammar/grammar_test_util.h"

namespace bm::engine::grammar {
namespace {

using ::testing::HasSubstr;
using testing::matches;

std::shared_ptr<const CompiledGrammar> build(const GrammarRequest& r) {
  absl::StatusOr<Grammar> g = build_grammar(r);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? testing::compile_or_die(*g) : nullptr;
}

TEST(GrammarRequest, ToolCallsFollowEachToolsOwnSchema) {
  GrammarRequest r;
  r.kind = GrammarKind::kToolCall;
  // Both tools use $defs with the same name: each resolves within its own schema.
  r.tools = {{"get_weather", R"({"type": "object", "properties": {"city": {"$ref": "#/$defs/C"}},
                                 "required": ["city"], "$defs": {"C": {"type": "string", "maxLength": 8}}})"},
             {"add", R"({"type": "object", "properties": {"a": {"$ref": "#/$defs/C"}, "b": {"type": "integer"}},
                         "required": ["a", "b"], "$defs": {"C": {"type": "integer"}}})"}};
  auto c = build(r);
  EXPECT_TRUE(matches(*c, "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"));
  EXPECT_TRUE(matches(*c, "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>"));
  EXPECT_FALSE(matches(*c, "{\"name\": \"add\", \"arguments\": {\"a\": \"x\", \"b\": 2}}\n</tool_call>"));
  EXPECT_FALSE(matches(*c, "{\"name\": \"other\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(matches(*c, "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}"));
  const std::string two_calls =
      "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>\n<tool_call>\n"
      "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>";
  EXPECT_FALSE(matches(*c, two_calls));  // one call unless parallel calls are asked for

  GrammarRequest parallel = r;
  parallel.parallel_calls = true;
  EXPECT_NE(parallel.cache_key(), r.cache_key());
  auto p = build(parallel);
  EXPECT_TRUE(matches(*p, "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>"));
  EXPECT_TRUE(matches(*p, two_calls));
  EXPECT_TRUE(matches(
      *p, two_calls + "\n<tool_call>\n" + "{\"name\": \"add\", \"arguments\": {\"a\": 3, \"b\": 4}}\n</tool_call>"));
  EXPECT_FALSE(matches(*p, two_calls + "\n"));  // a call that was begun must be finished
  EXPECT_FALSE(matches(*p,
                       "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>\n<tool_call>\n"
                       "{\"name\": \"add\", \"arguments\": {\"a\": \"x\", \"b\": 2}}\n</tool_call>"));

  r.tools.resize(1);
  r.tool_name_given = true;
  auto named = build(r);
  EXPECT_TRUE(matches(*named, "{\"city\": \"Oslo\"}}\n</tool_call>"));
  EXPECT_FALSE(matches(*named, "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"));
}

TEST(GrammarRequest, AfterReasoningTheConstraintStartsAtTheEndOfThink) {
  GrammarRequest r;
  r.kind = GrammarKind::kJsonSchema;
  r.text = R"({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})";
  r.after_reasoning = true;
  auto c = build(r);
  EXPECT_TRUE(matches(*c, "Let me think. <b> a</thin k </think>\n\n{\"a\": 1}"));
  EXPECT_TRUE(matches(*c, "</think>{\"a\":2}"));
  EXPECT_TRUE(matches(*c, "<<</t</think>{\"a\":3}"));
  EXPECT_FALSE(matches(*c, "{\"a\": 1}"));                    // the reasoning block must close first
  EXPECT_FALSE(matches(*c, "x</think>y</think>{\"a\": 1}"));  // and closes once
  EXPECT_FALSE(matches(*c, "x</think>\n{\"a\": \"no\"}"));
  GrammarRequest plain = r;
  plain.after_reasoning = false;
  EXPECT_NE(r.cache_key(), plain.cache_key());
}

TEST(GrammarRequest, BadInputIsNamed) {
  GrammarRequest tools;
  tools.kind = GrammarKind::kToolCall;
  tools.tools = {{"f", R"({"type": "object", "properties": {"x": {"not": {}}}})"}};
  EXPECT_THAT(std::string(build_grammar(tools).status().message()), HasSubstr("tool 'f' parameters"));
  GrammarRequest big;
  big.kind = GrammarKind::kGbnf;
  big.text = std::string(kMaxGrammarTextBytes + 1, ' ');
  EXPECT_THAT(std::string(build_grammar(big).status().message()), HasSubstr("at most"));
  GrammarRequest choice;
  choice.kind = GrammarKind::kChoice;
  EXPECT_THAT(std::string(build_grammar(choice).status().message()), HasSubstr("empty"));
  choice.choices = {"a\"b", "c"};
  auto c = build(choice);
  EXPECT_TRUE(matches(*c, "a\"b"));
  EXPECT_FALSE(matches(*c, "a"));
}

TEST(GrammarRequest, CacheKeysSeparateEveryField) {
  GrammarRequest a, b;
  a.kind = b.kind = GrammarKind::kChoice;
  a.choices = {"ab", "c"};
  b.choices = {"a", "bc"};
  EXPECT_NE(a.cache_key(), b.cache_key());
  b.choices = a.choices;
  EXPECT_EQ(a.cache_key(), b.cache_key());
  b.whitespace_pattern = " ";
  EXPECT_NE(a.cache_key(), b.cache_key());
}

}  // namespace
}  // namespace bm::engine::grammar
