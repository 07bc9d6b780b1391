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
  indent.indent = 2;
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
