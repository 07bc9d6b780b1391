#include "daemon/openai/request_json.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include "absl/strings/str_cat.h"

namespace bm::daemon::openai {
namespace {

using ::testing::HasSubstr;

// A tool as the OpenAI SDK sends it: no key is in alphabetical order.
constexpr std::string_view kTool =
    R"({"type": "function", "function": {"name": "get_weather", "description": "Weather <now> & 'here'",)"
    R"( "parameters": {"type": "object", "properties": {"unit": {"type": "string", "enum": ["c", "f"]},)"
    R"( "city": {"type": "string"}}, "required": ["city"]}, "strict": false}})";

TEST(RequestJson, KeyOrderSurvivesParseAndTemplateValue) {
  absl::StatusOr<RequestJson> j = parse_request_json(kTool);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(j->begin().key(), "type");
  EXPECT_EQ((*j)["function"]["parameters"]["properties"].begin().key(), "unit");
  absl::StatusOr<engine::Value> v = to_template_value(*j);
  ASSERT_TRUE(v.ok()) << v.status();
  // Python's json.dumps(tool) of the same dict, byte for byte.
  EXPECT_EQ(v->to_json(), kTool);
}

TEST(RequestJson, NumbersAndUnicodeConvertAsPythonLoadsThem) {
  absl::StatusOr<RequestJson> j = parse_request_json(R"({"i": -7, "u": 18, "f": 1.0, "e": 1e20, "s": "模型\u00e9"})");
  ASSERT_TRUE(j.ok()) << j.status();
  absl::StatusOr<engine::Value> v = to_template_value(*j);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->to_json(), R"({"i": -7, "u": 18, "f": 1.0, "e": 1e+20, "s": "模型é"})");
  absl::StatusOr<RequestJson> huge = parse_request_json("[18446744073709551615]");
  ASSERT_TRUE(huge.ok());
  EXPECT_THAT(std::string(to_template_value(*huge).status().message()), HasSubstr("does not fit in 64 bits"));
}

TEST(RequestJson, RepeatedKeyKeepsFirstPositionAndLastValueInSmallAndLargeObjects) {
  for (int size : {3, 40}) {
    std::string text = "{\"dup\": 1";
    for (int i = 0; i < size; ++i) text += ", \"k" + std::to_string(i) + "\": " + std::to_string(i);
    text += ", \"dup\": {\"x\": 2}}";
    absl::StatusOr<RequestJson> j = parse_request_json(text);
    ASSERT_TRUE(j.ok()) << j.status();
    EXPECT_EQ(j->size(), static_cast<size_t>(size) + 1) << size;
    EXPECT_EQ(j->begin().key(), "dup");
    EXPECT_EQ((*j)["dup"]["x"], 2);
    EXPECT_EQ((*j)["k2"], 2);
  }
}

// nlohmann's ordered parser scans every object for each new key; 200k keys would take it minutes. This test
// does not time anything: with a quadratic parser it simply does not finish within ctest's timeout.
TEST(RequestJson, OneHugeObjectParses) {
  std::string text = "{";
  for (int i = 0; i < 200000; ++i) text += (i ? ",\"" : "\"") + std::to_string(i) + "\":" + std::to_string(i);
  text += "}";
  absl::StatusOr<RequestJson> j = parse_request_json(text);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(j->size(), 200000u);
  EXPECT_EQ(j->items().begin().key(), "0");
  EXPECT_EQ((*j)["199999"], 199999);
}

TEST(RequestJson, BadTextAndDeepNestingAreRefusedWithASentence) {
  absl::StatusOr<RequestJson> bad = parse_request_json(R"({"a": [1, 2,, 3]})");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("not valid JSON (at byte"));
  EXPECT_FALSE(parse_request_json("").ok());
  EXPECT_FALSE(parse_request_json("{} x").ok());
  EXPECT_FALSE(parse_request_json("\"\xff\"").ok());

  std::string deep(kMaxRequestJsonDepth, '[');
  deep += std::string(kMaxRequestJsonDepth, ']');
  EXPECT_TRUE(parse_request_json(deep).ok());
  absl::StatusOr<RequestJson> too_deep = parse_request_json("[" + deep + "]");
  EXPECT_EQ(too_deep.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(too_deep.status().message()),
              HasSubstr(absl::StrCat("nested deeper than ", kMaxRequestJsonDepth, " levels")));
  EXPECT_FALSE(parse_request_json(std::string(1 << 20, '[')).ok());
}

}  // namespace
}  // namespace bm::daemon::openai
