#include "engine/template/value.h"

#include <gtest/gtest.h>

namespace bm::engine {
namespace {

TEST(Value, FromJsonKeepsKeyOrderAndNumberKinds) {
  auto v = Value::from_json(R"({"z": 1, "a": 2.0, "m": [true, null, "s"], "n": -7})");
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->entries().size(), 4u);
  EXPECT_EQ(v->entries()[0].first, "z");
  EXPECT_EQ(v->entries()[1].first, "a");
  EXPECT_TRUE(v->find("z")->is_int());
  EXPECT_TRUE(v->find("a")->is_double());
  EXPECT_EQ(v->to_json(), R"({"z": 1, "a": 2.0, "m": [true, null, "s"], "n": -7})");
}

TEST(Value, FromJsonRejectsBadText) {
  EXPECT_FALSE(Value::from_json("{\"a\": ").ok());
  EXPECT_FALSE(Value::from_json("18446744073709551615").ok());
}

TEST(Value, JsonFormatsLikePythonJsonDumps) {
  auto v = Value::from_json(R"({"b": [1, {"c": "é\n"}], "a": []})");
  ASSERT_TRUE(v.ok());
  JsonFormat indent;
  indent.indent = "  ";
  EXPECT_EQ(*v->to_json(indent), "{\n  \"b\": [\n    1,\n    {\n      \"c\": \"é\\n\"\n    }\n  ],\n  \"a\": []\n}");
  JsonFormat ascii;
  ascii.ensure_ascii = true;
  ascii.sort_keys = true;
  EXPECT_EQ(*v->to_json(ascii), R"({"a": [], "b": [1, {"c": "\u00e9\n"}]})");
  JsonFormat small;
  small.max_bytes = 5;
  EXPECT_EQ(v->to_json(small).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(Value::undefined("x").to_json(JsonFormat{}).ok());
}

// transformers' tojson is json.dumps(x, ensure_ascii=False): no HTML escaping of < > & ' (jinja2's own tojson
// would), Python's separators, and with indent every nesting level on its own line except empty containers.
TEST(Value, JsonEscapesExactlyAsPythonJsonDumps) {
  Value s = Value::string("<a href='x'>&amp;</a> \"q\" \\ \x01\x1f\x7f \u2028 é 😀 \b\f\n\r\t");
  EXPECT_EQ(s.to_json(), "\"<a href='x'>&amp;</a> \\\"q\\\" \\\\ \\u0001\\u001f\x7f \u2028 é 😀 \\b\\f\\n\\r\\t\"");
  JsonFormat ascii;
  ascii.ensure_ascii = true;
  EXPECT_EQ(*s.to_json(ascii),
            "\"<a href='x'>&amp;</a> \\\"q\\\" \\\\ \\u0001\\u001f\\u007f \\u2028 \\u00e9 \\ud83d\\ude00 "
            "\\b\\f\\n\\r\\t\"");
}

TEST(Value, JsonIndentAndSeparatorsAsPython) {
  auto v = Value::from_json(R"({"type": "object", "properties": {}, "required": [], "x": [1.5, {"e": {}}]})");
  ASSERT_TRUE(v.ok());
  JsonFormat tab;
  tab.indent = "\t";
  EXPECT_EQ(*v->to_json(tab),
            "{\n\t\"type\": \"object\",\n\t\"properties\": {},\n\t\"required\": [],\n\t\"x\": [\n\t\t1.5,\n\t\t{\n"
            "\t\t\t\"e\": {}\n\t\t}\n\t]\n}");
  JsonFormat zero;
  zero.indent = "";
  EXPECT_EQ(*Value::from_json("[1, [2]]")->to_json(zero), "[\n1,\n[\n2\n]\n]");
  JsonFormat compact;
  compact.item_separator = "";
  compact.key_separator = ":";
  EXPECT_EQ(*v->to_json(compact), R"({"type":"object""properties":{}"required":[]"x":[1.5{"e":{}}]})");
}

TEST(Value, FloatReprMatchesPython) {
  EXPECT_EQ(python_float_repr(1.0), "1.0");
  EXPECT_EQ(python_float_repr(0.1), "0.1");
  EXPECT_EQ(python_float_repr(1e-5), "1e-05");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(1e16), "1e+16");
  EXPECT_EQ(python_float_repr(123456789012345.0), "123456789012345.0");
  EXPECT_EQ(python_float_repr(-2.5e-300), "-2.5e-300");
  EXPECT_EQ(python_float_repr(-0.0), "-0.0");
}

TEST(Value, ReprAndEqualityFollowPython) {
  Value v = Value::object({{"k", Value::string("it's")}, {"t", Value::array({Value::integer(1)}, true)}});
  EXPECT_EQ(*v.repr(), "{'k': \"it's\", 't': (1,)}");
  EXPECT_TRUE(Value::integer(1).equals(Value::number(1.0)));
  EXPECT_TRUE(Value::boolean(true).equals(Value::integer(1)));
  EXPECT_FALSE(Value::string("1").equals(Value::integer(1)));
  EXPECT_FALSE(Value::array({}).truthy());
  EXPECT_TRUE(Value::string(" ").truthy());
  EXPECT_EQ(*Value::undefined("x").to_display_string(), "");
  EXPECT_EQ(*Value::none().to_display_string(), "None");
}

TEST(Value, DuplicateKeysKeepFirstPositionAndLastValue) {
  Value v = Value::object({{"a", Value::integer(1)}, {"b", Value::integer(2)}, {"a", Value::integer(3)}});
  ASSERT_EQ(v.entries().size(), 2u);
  EXPECT_EQ(v.entries()[0].first, "a");
  EXPECT_EQ(v.find("a")->as_int(), 3);
}

}  // namespace
}  // namespace bm::engine
