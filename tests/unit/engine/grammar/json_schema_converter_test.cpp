#include "engine/grammar/json_schema_converter.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/grammar/grammar_test_util.h"

namespace bm::engine::grammar {
namespace {

using ::testing::HasSubstr;
using testing::matches;

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> schema(std::string_view text,
                                                              const JsonGrammarOptions& options = {}) {
  absl::StatusOr<Grammar> g = json_schema_to_grammar(text, options);
  if (!g.ok()) return g.status();
  return CompiledGrammar::compile(*g, testing::byte_vocabulary());
}

std::shared_ptr<const CompiledGrammar> ok(std::string_view text) {
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c = schema(text);
  EXPECT_TRUE(c.ok()) << text << ": " << c.status();
  return c.ok() ? *c : nullptr;
}

std::string error_of(std::string_view text) {
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c = schema(text);
  return c.ok() ? "" : std::string(c.status().message());
}

TEST(JsonSchemaConverter, IntegerBoundsAreExact) {
  // Every bound combination over a window of values, against arithmetic.
  const std::vector<std::optional<int>> lows = {std::nullopt, -120, -7, -1, 0, 1, 9, 10, 95, 100};
  const std::vector<std::optional<int>> highs = {std::nullopt, -100, -10, -1, 0, 7, 10, 99, 101, 250};
  for (auto lo : lows)
    for (auto hi : highs)
      for (bool exclusive : {false, true}) {
        if (lo && hi && *lo > *hi) continue;
        std::string s = R"({"type": "integer")";
        if (lo) s += std::string(exclusive ? R"(, "exclusiveMinimum": )" : R"(, "minimum": )") + std::to_string(*lo);
        if (hi) s += std::string(R"(, "maximum": )") + std::to_string(*hi);
        s += "}";
        absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c = schema(s);
        const int first = lo.value_or(-300) + (lo && exclusive ? 1 : 0);
        if (hi && first > *hi) {
          EXPECT_FALSE(c.ok()) << s;
          continue;
        }
        ASSERT_TRUE(c.ok()) << s << ": " << c.status();
        for (int v = -300; v <= 300; ++v) {
          const bool in = (!lo || (exclusive ? v > *lo : v >= *lo)) && (!hi || v <= *hi);
          EXPECT_EQ(matches(**c, std::to_string(v)), in) << s << " value " << v;
        }
        if (lo || hi) {
          EXPECT_FALSE(matches(**c, "-0")) << s;
        }
        EXPECT_FALSE(matches(**c, "007")) << s;
      }
}

TEST(JsonSchemaConverter, NumberBounds) {
  auto unit = ok(R"({"type": "number", "minimum": 0, "maximum": 1})");
  for (const char* v : {"0", "0.5", "0.999", "1", "1.0", "1.000", "0.0"}) EXPECT_TRUE(matches(*unit, v)) << v;
  for (const char* v : {"-0.5", "1.5", "1.01", "2", "01", "1e0"}) EXPECT_FALSE(matches(*unit, v)) << v;
  auto positive = ok(R"({"type": "number", "exclusiveMinimum": 0})");
  for (const char* v : {"0.1", "3", "1000.25", "0.0001"}) EXPECT_TRUE(matches(*positive, v)) << v;
  for (const char* v : {"0", "0.0", "-1", "-0.1"}) EXPECT_FALSE(matches(*positive, v)) << v;
  auto negative = ok(R"({"type": "number", "minimum": -5, "exclusiveMaximum": -2})");
  for (const char* v : {"-5", "-4.5", "-2.1", "-3"}) EXPECT_TRUE(matches(*negative, v)) << v;
  for (const char* v : {"-2", "-5.5", "-1", "0", "-2.0"}) EXPECT_FALSE(matches(*negative, v)) << v;
  auto around = ok(R"({"type": "number", "minimum": -1.0, "maximum": 2})");
  for (const char* v : {"-1", "-0.5", "0", "1.75", "2"}) EXPECT_TRUE(matches(*around, v)) << v;
  for (const char* v : {"-1.5", "2.5", "3"}) EXPECT_FALSE(matches(*around, v)) << v;
  EXPECT_THAT(error_of(R"({"type": "number", "minimum": 0.5})"), HasSubstr("'minimum' 0.5 is not a whole number"));
  auto free = ok(R"({"type": "number"})");
  for (const char* v : {"0", "-1.5e10", "3.25E-2", "12"}) EXPECT_TRUE(matches(*free, v)) << v;
  for (const char* v : {"01", "1.", ".5", "+1", "1e"}) EXPECT_FALSE(matches(*free, v)) << v;
}

TEST(JsonSchemaConverter, ObjectsKeepOrderRequiredAndOptional) {
  auto c = ok(R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"},
                 "c": {"type": "boolean"}}, "required": ["b"]})");
  EXPECT_TRUE(matches(*c, R"({"b":"x"})"));
  EXPECT_TRUE(matches(*c, R"({"a":1,"b":"x"})"));
  EXPECT_TRUE(matches(*c, R"({ "a": 1, "b": "x", "c": true })"));
  EXPECT_TRUE(matches(*c, "{\n  \"b\": \"\",\n  \"c\": false\n}"));
  EXPECT_FALSE(matches(*c, R"({})"));  // b is required
  EXPECT_FALSE(matches(*c, R"({"a":1})"));
  EXPECT_FALSE(matches(*c, R"({"b":"x","d":1})"));  // no additional properties unless asked
  EXPECT_FALSE(matches(*c, R"({"b":"x",})"));
  EXPECT_FALSE(matches(*c, R"({"a":1.5,"b":"x"})"));
  EXPECT_FALSE(matches(*c, "{    \"b\":\"x\"}"));  // whitespace is bounded
}

TEST(JsonSchemaConverter, AdditionalPropertiesAndEmptyObjects) {
  auto extra = ok(R"({"type": "object", "properties": {"a": {"type": "integer"}},
                     "additionalProperties": {"type": "number"}})");
  EXPECT_TRUE(matches(*extra, R"({})"));
  EXPECT_TRUE(matches(*extra, R"({"a":1,"zz":2.5,"y":3})"));
  EXPECT_TRUE(matches(*extra, R"({"zz":2.5})"));
  EXPECT_FALSE(matches(*extra, R"({"zz":"s"})"));
  auto any = ok(R"({"type": "object"})");
  EXPECT_TRUE(matches(*any, R"({"k":[1,{"n":null}],"t":"\u00e9\n"})"));
  EXPECT_FALSE(matches(*any, R"([1])"));
  auto none = ok(R"({"type": "object", "properties": {}})");
  EXPECT_TRUE(matches(*none, "{}"));
  EXPECT_FALSE(matches(*none, R"({"a":1})"));
}

TEST(JsonSchemaConverter, ArraysCountItemsAndPrefixes) {
  auto c = ok(R"({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3})");
  EXPECT_FALSE(matches(*c, "[1]"));
  EXPECT_TRUE(matches(*c, "[1,2]"));
  EXPECT_TRUE(matches(*c, "[1, 2, 3]"));
  EXPECT_FALSE(matches(*c, "[1,2,3,4]"));
  auto tuple = ok(R"({"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}], "items": false})");
  EXPECT_TRUE(matches(*tuple, R"(["a",true])"));
  EXPECT_TRUE(matches(*tuple, R"(["a"])"));
  EXPECT_TRUE(matches(*tuple, R"([])"));
  EXPECT_FALSE(matches(*tuple, R"(["a",true,1])"));
  EXPECT_FALSE(matches(*tuple, R"([true])"));
  auto open = ok(R"({"type": "array", "prefixItems": [{"const": 1}], "items": {"type": "null"}, "minItems": 1})");
  EXPECT_TRUE(matches(*open, "[1,null,null]"));
  EXPECT_FALSE(matches(*open, "[]"));
  EXPECT_FALSE(matches(*open, "[1,2]"));
}

TEST(JsonSchemaConverter, RefsRecursionUnionsEnumsConst) {
  auto tree = ok(R"({"$ref": "#/$defs/node", "$defs": {"node": {"type": "object",
      "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
      "required": ["v"]}}})");
  EXPECT_TRUE(matches(*tree, R"({"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4,"kids":[]}]}]})"));
  EXPECT_FALSE(matches(*tree, R"({"v":1,"kids":[{}]})"));
  auto uni = ok(R"({"anyOf": [{"type": "string", "maxLength": 2}, {"type": "null"}, {"enum": [1, "x\"y", [true]]}]})");
  for (const char* v : {R"("ab")", "null", "1", R"("x\"y")", "[true]", R"("")"}) EXPECT_TRUE(matches(*uni, v)) << v;
  for (const char* v : {R"("abc")", "2", "[false]"}) EXPECT_FALSE(matches(*uni, v)) << v;
  auto konst = ok(R"({"const": {"a": [1, 2]}})");
  EXPECT_TRUE(matches(*konst, R"({"a":[1,2]})"));
  auto nullable = ok(R"({"type": "string", "nullable": true, "minLength": 1})");
  EXPECT_TRUE(matches(*nullable, "null"));
  EXPECT_TRUE(matches(*nullable, R"("a")"));
  EXPECT_FALSE(matches(*nullable, R"("")"));
  auto types = ok(R"({"type": ["integer", "null"]})");
  EXPECT_TRUE(matches(*types, "null"));
  EXPECT_TRUE(matches(*types, "-3"));
  auto self = ok(R"({"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
                     "required": ["next"]})");
  EXPECT_TRUE(matches(*self, R"({"next":{"next":null}})"));
}

TEST(JsonSchemaConverter, StringsFormatsPatternsLengths) {
  auto len = ok(R"({"type": "string", "minLength": 2, "maxLength": 3})");
  EXPECT_TRUE(matches(*len, R"("ab")"));
  EXPECT_TRUE(matches(*len, R"("a\nb")"));  // an escape is one character
  EXPECT_TRUE(matches(*len, R"("éé")"));
  EXPECT_FALSE(matches(*len, R"("a")"));
  EXPECT_FALSE(matches(*len, R"("abcd")"));
  auto date = ok(R"({"type": "string", "format": "date-time"})");
  EXPECT_TRUE(matches(*date, R"("2024-02-28T23:59:59Z")"));
  EXPECT_TRUE(matches(*date, R"("2024-12-01T00:00:00.123+05:30")"));
  EXPECT_FALSE(matches(*date, R"("2024-13-01T00:00:00Z")"));
  auto uuid = ok(R"({"type": "string", "format": "uuid"})");
  EXPECT_TRUE(matches(*uuid, R"("123e4567-e89b-12d3-a456-426614174000")"));
  auto email = ok(R"({"type": "string", "format": "email"})");
  EXPECT_TRUE(matches(*email, R"("a.b@example.com")"));
  EXPECT_FALSE(matches(*email, R"("example.com")"));
  auto pattern = ok(R"({"type": "string", "pattern": "^[A-Z]{2}-\\d+$"})");
  EXPECT_TRUE(matches(*pattern, R"("AB-12")"));
  EXPECT_FALSE(matches(*pattern, R"("A-12")"));
}

TEST(JsonSchemaConverter, RefusalsNameKeywordAndPlace) {
  EXPECT_THAT(error_of(R"({"type": "object", "properties": {"a": {"not": {"type": "null"}}}})"),
              HasSubstr("JSON schema at '/properties/a' uses the keyword 'not'"));
  EXPECT_THAT(error_of(R"({"type": "array", "uniqueItems": true})"), HasSubstr("'uniqueItems'"));
  EXPECT_THAT(error_of(R"({"type": "string", "format": "ipv6"})"), HasSubstr("string format 'ipv6'"));
  EXPECT_THAT(error_of(R"({"type": "string", "pattern": "(a)\\1"})"), HasSubstr("backreference"));
  EXPECT_THAT(error_of(R"({"$ref": "#/$defs/missing"})"), HasSubstr("does not resolve"));
  EXPECT_THAT(error_of(R"({"$ref": "http://x/y.json"})"), HasSubstr("only local references"));
  EXPECT_THAT(error_of(R"({"type": "strin"})"), HasSubstr("unknown type 'strin'"));
  EXPECT_THAT(error_of(R"({"type": "object", "required": ["x"]})"), HasSubstr("requires 'x'"));
  EXPECT_THAT(error_of("{not json"), HasSubstr("not valid JSON"));
  EXPECT_THAT(error_of("false"), HasSubstr("schema false"));
  EXPECT_THAT(error_of(R"({"type": "string", "maxLength": 100000})"), HasSubstr("'maxLength' 100000"));
  EXPECT_THAT(error_of(R"({"allOf": [{"type": "string"}, {"maxLength": 2}]})"), HasSubstr("'allOf'"));
  EXPECT_THAT(error_of(R"({"const": )" + std::string(1000, '[') + std::string(1000, ']') + "}"),
              HasSubstr("nests deeper than 128"));
  // Annotations and unknown keywords are ignored.
  EXPECT_EQ(error_of(R"({"type": "string", "title": "T", "description": "d", "x-custom": 1, "default": "a"})"), "");
}

TEST(JsonSchemaConverter, WhitespacePattern) {
  JsonGrammarOptions options;
  options.whitespace_pattern = "[ ]?";
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c =
      schema(R"({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})", options);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(matches(**c, R"({ "a": 1 })"));
  EXPECT_FALSE(matches(**c, "{\n\"a\":1}"));
  options.whitespace_pattern = "(";
  EXPECT_THAT(std::string(schema(R"({"type": "object"})", options).status().message()),
              HasSubstr("guided_whitespace_pattern"));
}

TEST(JsonSchemaConverter, JsonObjectGrammar) {
  absl::StatusOr<Grammar> g = json_object_grammar();
  ASSERT_TRUE(g.ok());
  auto c = testing::compile_or_die(*g);
  EXPECT_TRUE(matches(*c, R"({"a": [1, 2.5e3, "x", null, true, {"b": {}}]})"));
  EXPECT_FALSE(matches(*c, R"("just a string")"));
  EXPECT_FALSE(matches(*c, R"({"a": 1,})"));
}

}  // namespace
}  // namespace bm::engine::grammar
