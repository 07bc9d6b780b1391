#include "engine/grammar/json_schema_converter.h"

#include <cmath>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/grammar/regex_converter.h"

namespace bm::engine::grammar {
namespace {

// Ordered: properties are written in the order the schema lists them (pydantic field order).
using json = nlohmann::ordered_json;

constexpr int kMaxDepth = 64;
constexpr int32_t kMaxLengthBound = 10000;  // minLength/maxLength/minItems/maxItems above this are refused

const std::vector<KeywordInfo> kKeywords = {
    {"type", KeywordUse::kUsed},
    {"properties", KeywordUse::kUsed},
    {"required", KeywordUse::kUsed},
    {"additionalProperties", KeywordUse::kUsed},
    {"items", KeywordUse::kUsed},
    {"prefixItems", KeywordUse::kUsed},
    {"minItems", KeywordUse::kUsed},
    {"maxItems", KeywordUse::kUsed},
    {"enum", KeywordUse::kUsed},
    {"const", KeywordUse::kUsed},
    {"anyOf", KeywordUse::kUsed},
    {"oneOf", KeywordUse::kUsed},
    {"allOf", KeywordUse::kUsed},
    {"$ref", KeywordUse::kUsed},
    {"$defs", KeywordUse::kUsed},
    {"definitions", KeywordUse::kUsed},
    {"nullable", KeywordUse::kUsed},
    {"pattern", KeywordUse::kUsed},
    {"format", KeywordUse::kUsed},
    {"minLength", KeywordUse::kUsed},
    {"maxLength", KeywordUse::kUsed},
    {"minimum", KeywordUse::kUsed},
    {"maximum", KeywordUse::kUsed},
    {"exclusiveMinimum", KeywordUse::kUsed},
    {"exclusiveMaximum", KeywordUse::kUsed},
    {"title", KeywordUse::kIgnored},
    {"description", KeywordUse::kIgnored},
    {"default", KeywordUse::kIgnored},
    {"examples", KeywordUse::kIgnored},
    {"$schema", KeywordUse::kIgnored},
    {"$id", KeywordUse::kIgnored},
    {"$comment", KeywordUse::kIgnored},
    {"$anchor", KeywordUse::kIgnored},
    {"deprecated", KeywordUse::kIgnored},
    {"readOnly", KeywordUse::kIgnored},
    {"writeOnly", KeywordUse::kIgnored},
    {"discriminator", KeywordUse::kIgnored},
    {"contentMediaType", KeywordUse::kIgnored},
    {"not", KeywordUse::kRefused},
    {"if", KeywordUse::kRefused},
    {"then", KeywordUse::kRefused},
    {"else", KeywordUse::kRefused},
    {"dependentRequired", KeywordUse::kRefused},
    {"dependentSchemas", KeywordUse::kRefused},
    {"dependencies", KeywordUse::kRefused},
    {"patternProperties", KeywordUse::kRefused},
    {"propertyNames", KeywordUse::kRefused},
    {"unevaluatedProperties", KeywordUse::kRefused},
    {"unevaluatedItems", KeywordUse::kRefused},
    {"additionalItems", KeywordUse::kRefused},
    {"minProperties", KeywordUse::kRefused},
    {"maxProperties", KeywordUse::kRefused},
    {"uniqueItems", KeywordUse::kRefused},
    {"contains", KeywordUse::kRefused},
    {"minContains", KeywordUse::kRefused},
    {"maxContains", KeywordUse::kRefused},
    {"multipleOf", KeywordUse::kRefused},
    {"$dynamicRef", KeywordUse::kRefused},
    {"$recursiveRef", KeywordUse::kRefused},
    {"contentEncoding", KeywordUse::kRefused},
    {"contentSchema", KeywordUse::kRefused},
};

// String formats, as regular expressions over the decoded string. Days stop at 28 so that every date exists.
const std::map<std::string, std::string, std::less<>> kFormats = {
    {"date", R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8]))"},
    {"time", R"(([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d))"},
    {"date-time",
     R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d))"},
    {"uuid", R"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"},
    // RFC 5321's lengths: local part at most 64, domain labels at most 63.
    {"email",
     R"([a-zA-Z0-9_+-]{1,64}(\.[a-zA-Z0-9_+-]{1,64}){0,2}@[a-zA-Z0-9-]{1,63}(\.[a-zA-Z0-9-]{1,63}){0,2}\.[a-zA-Z]{2,24})"},
    {"ipv4", R"(((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d))"},
    {"uri", R"([a-zA-Z][a-zA-Z0-9+.-]*://[a-zA-Z0-9._~%!$&'()*+,;=:@/?-]+)"},
    // RFC 1123 labels (at most 63 characters), at most 4 of them.
    {"hostname", R"([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?){0,3})"},
};

std::string rule_name_from(std::string_view hint) {
  std::string out;
  for (char c : hint) out += (std::isalnum(static_cast<unsigned char>(c)) ? c : '-');
  return out.empty() ? "schema" : out;
}

std::string pow10_minus_one(size_t digits) {
  return std::string(digits, '9');
}

class SchemaConverter {
 public:
  SchemaConverter(Grammar& g, const json& root, const JsonGrammarOptions& options)
      : g_(g), root_(root), options_(options) {}

  absl::Status init() {
    ws_ = g_.add_rule(g_.unique_name("ws"));
    if (options_.whitespace_pattern) {
      absl::StatusOr<int32_t> e = regex_to_expr(g_, *options_.whitespace_pattern);
      if (!e.ok()) return absl::InvalidArgumentError(absl::StrCat("guided_whitespace_pattern: ", e.status().message()));
      g_.set_body(ws_, *e);
    } else {
      ByteClass indent = ByteClass::of(' ');
      indent.add('\t', '\t');
      g_.set_body(ws_, g_.choice({g_.empty(), g_.literal(" "),
                                  g_.sequence({g_.literal("\n"), g_.repeat(g_.bytes(indent), 0, 20)})}));
    }
    return absl::OkStatus();
  }

  // The rule of a JSON value of any kind.
  int32_t any_value() {
    if (value_ >= 0) return value_;
    value_ = g_.add_rule(g_.unique_name("value"));
    object_ = g_.add_rule(g_.unique_name("object"));
    const int32_t object = object_;
    const int32_t array = g_.add_rule(g_.unique_name("array"));
    const int32_t ws = g_.rule_ref(ws_);
    g_.set_body(value_,
                g_.choice({g_.rule_ref(object), g_.rule_ref(array), g_.rule_ref(string_rule()),
                           g_.rule_ref(number_rule()), g_.literal("true"), g_.literal("false"), g_.literal("null")}));
    const int32_t member = g_.sequence({g_.rule_ref(string_rule()), ws, g_.literal(":"), ws, g_.rule_ref(value_)});
    g_.set_body(
        object,
        g_.sequence({g_.literal("{"), ws,
                     g_.optional(g_.sequence({member, g_.star(g_.sequence({ws, g_.literal(","), ws, member})), ws})),
                     g_.literal("}")}));
    g_.set_body(array, g_.sequence({g_.literal("["), ws,
                                    g_.optional(g_.sequence(
                                        {g_.rule_ref(value_),
                                         g_.star(g_.sequence({ws, g_.literal(","), ws, g_.rule_ref(value_)})), ws})),
                                    g_.literal("]")}));
    return value_;
  }

  int32_t any_object_rule() {
    any_value();
    return object_;
  }

  // One character of a JSON string's content, escapes included (an escape counts as one character, as the
  // validator counts the decoded string).
  int32_t char_rule() {
    if (char_ >= 0) return char_;
    char_ = g_.add_rule(g_.unique_name("char"));
    absl::StatusOr<int32_t> plain = regex_to_expr(g_, R"([^"\\\x00-\x1f])");
    ByteClass esc;
    for (char c : std::string_view("\"\\/bfnrt")) esc.add(static_cast<uint8_t>(c), static_cast<uint8_t>(c));
    ByteClass hex = ByteClass::range('0', '9');
    hex.add('a', 'f');
    hex.add('A', 'F');
    g_.set_body(
        char_,
        g_.choice({*plain, g_.sequence({g_.literal("\\"),
                                        g_.choice({g_.bytes(esc), g_.sequence({g_.literal("u"),
                                                                               g_.repeat(g_.bytes(hex), 4, 4)})})})}));
    return char_;
  }

  int32_t string_rule() {
    if (string_ >= 0) return string_;
    string_ = g_.add_rule(g_.unique_name("string"));
    g_.set_body(string_, g_.sequence({g_.literal("\""), g_.star(g_.rule_ref(char_rule())), g_.literal("\"")}));
    return string_;
  }

  int32_t number_rule() {
    if (number_ >= 0) return number_;
    number_ = g_.add_rule(g_.unique_name("number"));
    absl::StatusOr<int32_t> e = regex_to_expr(g_, R"(-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?)");
    g_.set_body(number_, *e);
    return number_;
  }

  absl::StatusOr<int32_t> visit(const json& s, const std::string& path, int depth) {
    if (depth > kMaxDepth) return fail(path, absl::StrCat("nests deeper than ", kMaxDepth, " levels"));
    if (g_.num_rules() > options_.max_rules)
      return absl::InvalidArgumentError(
          absl::StrCat("the JSON schema is too large: it needs more than ", options_.max_rules, " grammar rules"));
    if (s.is_boolean()) {
      if (s.get<bool>()) return g_.rule_ref(any_value());
      return fail(path, "is the schema false, which no value satisfies");
    }
    if (!s.is_object()) return fail(path, "must be an object or a boolean");
    for (const auto& [key, value] : s.items()) {
      for (const KeywordInfo& k : kKeywords)
        if (k.keyword == key && k.use == KeywordUse::kRefused)
          return fail(path, absl::StrCat("uses the keyword '", key, "', which structured output does not support"));
    }
    if (auto it = s.find("nullable"); it != s.end() && it->is_boolean() && it->get<bool>()) {
      json inner = s;
      inner.erase("nullable");
      absl::StatusOr<int32_t> e = visit(inner, path, depth + 1);
      if (!e.ok()) return e;
      return g_.choice({*e, g_.literal("null")});
    }
    if (auto it = s.find("$ref"); it != s.end()) return ref(*it, path);
    if (auto it = s.find("const"); it != s.end()) return g_.literal(it->dump());
    if (auto it = s.find("enum"); it != s.end()) {
      if (!it->is_array() || it->empty()) return fail(path, "'enum' must be a non-empty array");
      std::vector<int32_t> alternatives;
      std::set<std::string> seen;
      for (const json& v : *it)
        if (seen.insert(v.dump()).second) alternatives.push_back(g_.literal(v.dump()));
      return g_.choice(std::move(alternatives));
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (auto it = s.find(key); it != s.end()) {
        if (!it->is_array() || it->empty()) return fail(path, absl::StrCat("'", key, "' must be a non-empty array"));
        std::vector<int32_t> alternatives;
        for (size_t i = 0; i < it->size(); ++i) {
          absl::StatusOr<int32_t> e = visit((*it)[i], absl::StrCat(path, "/", key, "/", i), depth + 1);
          if (!e.ok()) return e;
          alternatives.push_back(*e);
        }
        return g_.choice(std::move(alternatives));
      }
    }
    if (auto it = s.find("allOf"); it != s.end()) {
      if (!it->is_array() || it->size() != 1)
        return fail(path, "uses 'allOf' with more than one schema, which structured output does not support");
      return visit((*it)[0], path + "/allOf/0", depth + 1);
    }
    auto type = s.find("type");
    if (type == s.end()) {
      if (s.contains("properties") || s.contains("additionalProperties") || s.contains("required"))
        return typed(s, "object", path, depth);
      if (s.contains("items") || s.contains("prefixItems")) return typed(s, "array", path, depth);
      if (s.contains("pattern") || s.contains("format") || s.contains("minLength") || s.contains("maxLength"))
        return typed(s, "string", path, depth);
      return g_.rule_ref(any_value());
    }
    if (type->is_string()) return typed(s, type->get<std::string>(), path, depth);
    if (type->is_array() && !type->empty()) {
      std::vector<int32_t> alternatives;
      for (const json& t : *type) {
        if (!t.is_string()) return fail(path, "'type' must be a string or an array of strings");
        absl::StatusOr<int32_t> e = typed(s, t.get<std::string>(), path, depth);
        if (!e.ok()) return e;
        alternatives.push_back(*e);
      }
      return g_.choice(std::move(alternatives));
    }
    return fail(path, "'type' must be a string or an array of strings");
  }

 private:
  absl::Status fail(const std::string& path, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat("JSON schema at '", path.empty() ? "#" : path, "' ", what));
  }

  absl::StatusOr<int32_t> ref(const json& target, const std::string& path) {
    if (!target.is_string()) return fail(path, "'$ref' must be a string");
    const std::string r = target.get<std::string>();
    if (auto it = refs_.find(r); it != refs_.end()) return g_.rule_ref(it->second);
    if (r.empty() || r[0] != '#')
      return fail(path,
                  absl::StrCat("'$ref' '", r, "' points outside this schema; only local references (#/...) work"));
    const json* resolved = nullptr;
    try {
      const json::json_pointer pointer(r.substr(1));
      if (root_.contains(pointer)) resolved = &root_.at(pointer);
    } catch (const json::exception&) {
    }
    if (!resolved) return fail(path, absl::StrCat("'$ref' '", r, "' does not resolve within the schema"));
    // The rule exists before its body is built, so a recursive reference finds it.
    const int32_t rule = g_.add_rule(g_.unique_name(rule_name_from(r.substr(r.rfind('/') + 1))));
    refs_[r] = rule;
    absl::StatusOr<int32_t> body = visit(*resolved, r, 1);
    if (!body.ok()) return body;
    g_.set_body(rule, *body);
    return g_.rule_ref(rule);
  }

  absl::StatusOr<std::optional<int64_t>> read_count(const json& s, const char* key, const std::string& path) {
    auto it = s.find(key);
    if (it == s.end()) return std::optional<int64_t>();
    if (!it->is_number_integer() || it->get<int64_t>() < 0)
      return fail(path, absl::StrCat("'", key, "' must be a non-negative integer"));
    if (it->get<int64_t>() > kMaxLengthBound)
      return fail(path, absl::StrCat("'", key, "' ", it->get<int64_t>(), " is above the supported ", kMaxLengthBound));
    return std::optional<int64_t>(it->get<int64_t>());
  }

  absl::StatusOr<int32_t> typed(const json& s, const std::string& type, const std::string& path, int depth) {
    if (type == "null") return g_.literal("null");
    if (type == "boolean") return g_.choice({g_.literal("true"), g_.literal("false")});
    if (type == "string") return string_schema(s, path);
    if (type == "integer") return integer_schema(s, path);
    if (type == "number") return number_schema(s, path);
    if (type == "object") return object_schema(s, path, depth);
    if (type == "array") return array_schema(s, path, depth);
    return fail(path, absl::StrCat("has the unknown type '", type, "'"));
  }

  absl::StatusOr<int32_t> string_schema(const json& s, const std::string& path) {
    absl::StatusOr<std::optional<int64_t>> min = read_count(s, "minLength", path);
    if (!min.ok()) return min.status();
    absl::StatusOr<std::optional<int64_t>> max = read_count(s, "maxLength", path);
    if (!max.ok()) return max.status();
    const bool lengths = min->has_value() || max->has_value();
    std::optional<std::string> pattern;
    if (auto it = s.find("format"); it != s.end()) {
      if (!it->is_string()) return fail(path, "'format' must be a string");
      auto f = kFormats.find(it->get<std::string>());
      if (f == kFormats.end())
        return fail(path, absl::StrCat("uses the string format '", it->get<std::string>(),
                                       "', which structured output does not support (supported: date, time, "
                                       "date-time, uuid, email, ipv4, uri, hostname)"));
      pattern = f->second;
    }
    if (auto it = s.find("pattern"); it != s.end()) {
      if (!it->is_string()) return fail(path, "'pattern' must be a string");
      if (pattern) return fail(path, "has both 'pattern' and 'format', which structured output does not combine");
      pattern = it->get<std::string>();
    }
    if (pattern) {
      if (lengths)
        return fail(path,
                    "combines 'pattern' or 'format' with 'minLength'/'maxLength', which structured output "
                    "does not support");
      absl::StatusOr<int32_t> e = regex_to_expr(g_, *pattern, RegexOptions{.json_string = true});
      if (!e.ok()) return fail(path, absl::StrCat("has a 'pattern' that cannot be used: ", e.status().message()));
      return g_.sequence({g_.literal("\""), *e, g_.literal("\"")});
    }
    if (!lengths) return g_.rule_ref(string_rule());
    const int32_t lo = static_cast<int32_t>(min->value_or(0));
    const int32_t hi = max->has_value() ? static_cast<int32_t>(**max) : Grammar::kUnbounded;
    if (hi != Grammar::kUnbounded && hi < lo) return fail(path, "has 'maxLength' below 'minLength'");
    return g_.sequence({g_.literal("\""), g_.repeat(g_.rule_ref(char_rule()), lo, hi), g_.literal("\"")});
  }

  // Decimal numerals (no sign, no leading zeros) of the same length from a to b, digit by digit.
  int32_t same_length(const std::string& a, const std::string& b) {
    if (a.empty()) return g_.empty();
    if (a == b) return g_.literal(a);
    const size_t rest = a.size() - 1;
    if (a.substr(1) == std::string(rest, '0') && b.substr(1) == std::string(rest, '9'))
      return g_.sequence(
          {g_.bytes(ByteClass::range(static_cast<uint8_t>(a[0]), static_cast<uint8_t>(b[0]))),
           g_.repeat(g_.bytes(ByteClass::range('0', '9')), static_cast<int32_t>(rest), static_cast<int32_t>(rest))});
    if (a[0] == b[0]) return g_.sequence({g_.literal(a.substr(0, 1)), same_length(a.substr(1), b.substr(1))});
    std::vector<int32_t> alternatives;
    alternatives.push_back(g_.sequence({g_.literal(a.substr(0, 1)), same_length(a.substr(1), pow10_minus_one(rest))}));
    if (b[0] - a[0] > 1)
      alternatives.push_back(g_.sequence(
          {g_.bytes(ByteClass::range(static_cast<uint8_t>(a[0] + 1), static_cast<uint8_t>(b[0] - 1))),
           g_.repeat(g_.bytes(ByteClass::range('0', '9')), static_cast<int32_t>(rest), static_cast<int32_t>(rest))}));
    alternatives.push_back(g_.sequence({g_.literal(b.substr(0, 1)), same_length(std::string(rest, '0'), b.substr(1))}));
    return g_.choice(std::move(alternatives));
  }

  // Non-negative integers in [lo, hi]; hi unset: no upper bound.
  int32_t natural_range(uint64_t lo, std::optional<uint64_t> hi) {
    const std::string a = std::to_string(lo);
    std::vector<int32_t> alternatives;
    const size_t last = hi ? std::to_string(*hi).size() : a.size();
    for (size_t len = a.size(); len <= last; ++len) {
      const std::string from = len == a.size() ? a : "1" + std::string(len - 1, '0');
      const std::string to = hi && len == last ? std::to_string(*hi) : pow10_minus_one(len);
      if (from == "0" && to.size() > 1) continue;  // unreachable: "0" has length 1
      alternatives.push_back(same_length(from, to));
    }
    if (!hi)
      alternatives.push_back(g_.sequence(
          {g_.bytes(ByteClass::range('1', '9')),
           g_.repeat(g_.bytes(ByteClass::range('0', '9')), static_cast<int32_t>(a.size()), Grammar::kUnbounded)}));
    return g_.choice(std::move(alternatives));
  }

  struct Bound {
    std::optional<double> value;
    bool exclusive = false;
  };

  absl::StatusOr<std::pair<Bound, Bound>> bounds(const json& s, const std::string& path) {
    Bound lo, hi;
    auto read = [&](const char* key, Bound& b, bool exclusive, bool lower) -> absl::Status {
      auto it = s.find(key);
      if (it == s.end()) return absl::OkStatus();
      if (it->is_boolean()) {  // draft 4: exclusiveMinimum: true qualifies minimum
        if (it->get<bool>()) b.exclusive = true;
        return absl::OkStatus();
      }
      if (!it->is_number()) return fail(path, absl::StrCat("'", key, "' must be a number"));
      const double v = it->get<double>();
      if (std::floor(v) != v || std::fabs(v) > 1e15)
        return fail(path, absl::StrCat("'", key, "' ", it->dump(),
                                       " is not a whole number of at most 15 digits, which structured output needs "
                                       "for bounds"));
      const bool tighter = !b.value || (lower ? v >= *b.value : v <= *b.value);
      if (tighter) {
        b.value = v;
        b.exclusive = exclusive || (b.exclusive && !exclusive && false);
      }
      return absl::OkStatus();
    };
    for (auto [key, b, exclusive, lower] : {std::tuple<const char*, Bound*, bool, bool>{"minimum", &lo, false, true},
                                            {"exclusiveMinimum", &lo, true, true},
                                            {"maximum", &hi, false, false},
                                            {"exclusiveMaximum", &hi, true, false}})
      if (absl::Status st = read(key, *b, exclusive, lower); !st.ok()) return st;
    if (s.contains("exclusiveMinimum") && s["exclusiveMinimum"].is_boolean() && s["exclusiveMinimum"].get<bool>())
      lo.exclusive = true;
    if (s.contains("exclusiveMaximum") && s["exclusiveMaximum"].is_boolean() && s["exclusiveMaximum"].get<bool>())
      hi.exclusive = true;
    return std::make_pair(lo, hi);
  }

  absl::StatusOr<int32_t> integer_schema(const json& s, const std::string& path) {
    absl::StatusOr<std::pair<Bound, Bound>> b = bounds(s, path);
    if (!b.ok()) return b.status();
    if (!b->first.value && !b->second.value) return regex_to_expr(g_, R"(-?(0|[1-9]\d*))");
    std::optional<int64_t> lo, hi;
    if (b->first.value) lo = static_cast<int64_t>(*b->first.value) + (b->first.exclusive ? 1 : 0);
    if (b->second.value) hi = static_cast<int64_t>(*b->second.value) - (b->second.exclusive ? 1 : 0);
    if (lo && hi && *lo > *hi) return fail(path, "has integer bounds that no integer satisfies");
    std::vector<int32_t> alternatives;
    if (!lo || *lo < 0) {  // negative values: magnitudes from max(1, -hi) up to -lo
      const uint64_t from = hi && *hi < 0 ? static_cast<uint64_t>(-*hi) : 1;
      std::optional<uint64_t> to;
      if (lo) to = static_cast<uint64_t>(-*lo);
      alternatives.push_back(g_.sequence({g_.literal("-"), natural_range(from, to)}));
    }
    if (!hi || *hi >= 0) {
      const uint64_t from = lo && *lo > 0 ? static_cast<uint64_t>(*lo) : 0;
      std::optional<uint64_t> to;
      if (hi) to = static_cast<uint64_t>(*hi);
      alternatives.push_back(natural_range(from, to));
    }
    return g_.choice(std::move(alternatives));
  }

  // Non-negative decimals (no exponent) between whole numbers a and b (b unset: unbounded), each end open or
  // closed.
  int32_t magnitude(uint64_t a, bool a_open, std::optional<uint64_t> b, bool b_open) {
    const int32_t digit = g_.bytes(ByteClass::range('0', '9'));
    const int32_t any_fraction = g_.optional(g_.sequence({g_.literal("."), g_.plus(digit)}));
    const int32_t zero_fraction = g_.optional(g_.sequence({g_.literal("."), g_.plus(g_.literal("0"))}));
    const int32_t nonzero_fraction =
        g_.sequence({g_.literal("."), g_.star(digit), g_.bytes(ByteClass::range('1', '9')), g_.star(digit)});
    std::vector<int32_t> alternatives;
    uint64_t start = a;
    if (a_open) {
      if (!b || a < *b) alternatives.push_back(g_.sequence({g_.literal(std::to_string(a)), nonzero_fraction}));
      start = a + 1;
    }
    if (!b) {
      alternatives.push_back(g_.sequence({natural_range(start, std::nullopt), any_fraction}));
    } else {
      if (*b >= 1 && start <= *b - 1) alternatives.push_back(g_.sequence({natural_range(start, *b - 1), any_fraction}));
      if (!b_open && start <= *b) alternatives.push_back(g_.sequence({g_.literal(std::to_string(*b)), zero_fraction}));
    }
    if (alternatives.empty()) return g_.bytes(ByteClass{});
    return g_.choice(std::move(alternatives));
  }

  absl::StatusOr<int32_t> number_schema(const json& s, const std::string& path) {
    absl::StatusOr<std::pair<Bound, Bound>> b = bounds(s, path);
    if (!b.ok()) return b.status();
    if (!b->first.value && !b->second.value) return g_.rule_ref(number_rule());
    const Bound lo = b->first, hi = b->second;
    if (lo.value && hi.value && (*lo.value > *hi.value || (*lo.value == *hi.value && (lo.exclusive || hi.exclusive))))
      return fail(path, "has number bounds that no number satisfies");
    std::vector<int32_t> alternatives;
    if (!lo.value || *lo.value < 0) {  // negative side: "-" then a magnitude in [max(0, -hi), -lo]
      uint64_t from = 0;
      bool from_open = true;  // "-0" is zero: leave it to the non-negative side unless that side is empty
      if (hi.value && *hi.value < 0) {
        from = static_cast<uint64_t>(-*hi.value);
        from_open = hi.exclusive;
      }
      std::optional<uint64_t> to;
      bool to_open = false;
      if (lo.value) {
        to = static_cast<uint64_t>(-*lo.value);
        to_open = lo.exclusive;
      }
      alternatives.push_back(g_.sequence({g_.literal("-"), magnitude(from, from_open, to, to_open)}));
    }
    if (!hi.value || *hi.value > 0 || (*hi.value == 0 && !hi.exclusive)) {
      uint64_t from = 0;
      bool from_open = false;
      if (lo.value && *lo.value >= 0) {
        from = static_cast<uint64_t>(*lo.value);
        from_open = lo.exclusive;
      }
      std::optional<uint64_t> to;
      bool to_open = false;
      if (hi.value) {
        to = static_cast<uint64_t>(*hi.value);
        to_open = hi.exclusive;
      }
      alternatives.push_back(magnitude(from, from_open, to, to_open));
    }
    return g_.choice(std::move(alternatives));
  }

  absl::StatusOr<int32_t> object_schema(const json& s, const std::string& path, int depth) {
    const json empty = json::object();
    const json& props = s.contains("properties") ? s["properties"] : empty;
    if (!props.is_object()) return fail(path, "'properties' must be an object");
    std::set<std::string> required;
    if (auto it = s.find("required"); it != s.end()) {
      if (!it->is_array()) return fail(path, "'required' must be an array of property names");
      for (const json& r : *it) {
        if (!r.is_string()) return fail(path, "'required' must be an array of property names");
        if (!props.contains(r.get<std::string>()))
          return fail(path, absl::StrCat("requires '", r.get<std::string>(),
                                         "', which 'properties' does not define (structured output needs its schema)"));
        required.insert(r.get<std::string>());
      }
    }
    // Additional properties: absent means none (as OpenAI's strict mode and XGrammar's default): a model that may
    // add keys at will rarely writes the ones asked for.
    std::optional<int32_t> extra_value;
    if (auto it = s.find("additionalProperties"); it != s.end()) {
      if (!(it->is_boolean() && !it->get<bool>())) {
        absl::StatusOr<int32_t> v = visit(*it, path + "/additionalProperties", depth + 1);
        if (!v.ok()) return v;
        extra_value = *v;
      }
    }
    if (props.empty() && !extra_value && !s.contains("properties") && !s.contains("additionalProperties"))
      return g_.rule_ref(any_object_rule());
    const int32_t ws = g_.rule_ref(ws_);
    const std::string base = rule_name_from(path.empty() ? "root" : path);
    std::vector<int32_t> members;
    std::vector<bool> optional;
    for (const auto& [name, schema] : props.items()) {
      absl::StatusOr<int32_t> v = visit(schema, absl::StrCat(path, "/properties/", name), depth + 1);
      if (!v.ok()) return v;
      const int32_t rule = g_.add_rule(g_.unique_name(base + "-" + rule_name_from(name)));
      g_.set_body(rule, g_.sequence({g_.literal(json(name).dump()), ws, g_.literal(":"), ws, *v}));
      members.push_back(rule);
      optional.push_back(!required.count(name));
    }
    const int32_t comma = g_.sequence({ws, g_.literal(","), ws});
    // after[i]: members i.. once something was written (each behind a comma); first[i]: nothing written yet.
    const size_t n = members.size();
    std::vector<int32_t> after(n + 1), first(n + 1);
    for (size_t i = 0; i <= n; ++i) {
      after[i] = g_.add_rule(g_.unique_name(absl::StrCat(base, "-after-", i)));
      first[i] = g_.add_rule(g_.unique_name(absl::StrCat(base, "-from-", i)));
    }
    if (extra_value) {
      const int32_t extra = g_.add_rule(g_.unique_name(base + "-extra"));
      g_.set_body(extra, g_.sequence({g_.rule_ref(string_rule()), ws, g_.literal(":"), ws, *extra_value}));
      g_.set_body(after[n], g_.star(g_.sequence({comma, g_.rule_ref(extra)})));
      g_.set_body(first[n], g_.optional(g_.sequence({g_.rule_ref(extra), g_.rule_ref(after[n])})));
    } else {
      g_.set_body(after[n], g_.empty());
      g_.set_body(first[n], g_.empty());
    }
    for (size_t i = n; i-- > 0;) {
      const int32_t take_after = g_.sequence({comma, g_.rule_ref(members[i]), g_.rule_ref(after[i + 1])});
      const int32_t take_first = g_.sequence({g_.rule_ref(members[i]), g_.rule_ref(after[i + 1])});
      g_.set_body(after[i], optional[i] ? g_.choice({take_after, g_.rule_ref(after[i + 1])}) : take_after);
      g_.set_body(first[i], optional[i] ? g_.choice({take_first, g_.rule_ref(first[i + 1])}) : take_first);
    }
    const int32_t rule = g_.add_rule(g_.unique_name(base + "-object"));
    g_.set_body(rule, g_.sequence({g_.literal("{"), ws, g_.rule_ref(first[0]), ws, g_.literal("}")}));
    return g_.rule_ref(rule);
  }

  absl::StatusOr<int32_t> array_schema(const json& s, const std::string& path, int depth) {
    absl::StatusOr<std::optional<int64_t>> min = read_count(s, "minItems", path);
    if (!min.ok()) return min.status();
    absl::StatusOr<std::optional<int64_t>> max = read_count(s, "maxItems", path);
    if (!max.ok()) return max.status();
    std::vector<int32_t> prefix;
    if (auto it = s.find("prefixItems"); it != s.end()) {
      if (!it->is_array()) return fail(path, "'prefixItems' must be an array of schemas");
      if (it->size() > 1000) return fail(path, "has more than 1000 'prefixItems'");
      for (size_t i = 0; i < it->size(); ++i) {
        absl::StatusOr<int32_t> e = visit((*it)[i], absl::StrCat(path, "/prefixItems/", i), depth + 1);
        if (!e.ok()) return e;
        prefix.push_back(*e);
      }
    }
    std::optional<int32_t> item;  // unset: no items beyond the prefix
    auto items = s.find("items");
    if (items == s.end() || (items->is_boolean() && items->get<bool>())) {
      item = g_.rule_ref(any_value());
    } else if (!(items->is_boolean() && !items->get<bool>())) {
      if (items->is_array()) return fail(path, "uses the array form of 'items'; write it as 'prefixItems'");
      absl::StatusOr<int32_t> e = visit(*items, path + "/items", depth + 1);
      if (!e.ok()) return e;
      item = *e;
    }
    const int64_t lo = min->value_or(0);
    std::optional<int64_t> hi = *max;
    if (!item) hi = std::min<int64_t>(hi.value_or(static_cast<int64_t>(prefix.size())), prefix.size());
    if (hi && *hi < lo) return fail(path, "allows no array: 'maxItems' (or the prefix length) is below 'minItems'");
    const int32_t ws = g_.rule_ref(ws_);
    const int32_t comma = g_.sequence({ws, g_.literal(","), ws});
    const std::string base = rule_name_from(path.empty() ? "root" : path);
    int32_t item_rule = -1;
    if (item) {
      item_rule = g_.add_rule(g_.unique_name(base + "-item"));
      g_.set_body(item_rule, *item);
    }
    // The element at index k (0-based) and what follows, nesting optional tails so counts stay exact.
    // tail(k): elements k.. given k were written (each behind a comma).
    std::function<int32_t(int64_t)> tail = [&](int64_t k) -> int32_t {
      const bool must = k < lo;
      const bool may = !hi || k < *hi;
      if (!may) return g_.empty();
      if (k >= static_cast<int64_t>(prefix.size())) {
        // Past the prefix: (k..lo-1) mandatory items, then up to hi-max(k,lo) optional ones.
        const int64_t mandatory = std::max<int64_t>(lo - k, 0);
        const int32_t one = g_.sequence({comma, g_.rule_ref(item_rule)});
        const int32_t fixed = g_.repeat(one, static_cast<int32_t>(mandatory), static_cast<int32_t>(mandatory));
        const int32_t rest = hi ? g_.repeat(one, 0, static_cast<int32_t>(*hi - k - mandatory)) : g_.star(one);
        return g_.sequence({fixed, rest});
      }
      const int32_t here = g_.sequence({comma, prefix[static_cast<size_t>(k)], tail(k + 1)});
      return must ? here : g_.optional(here);
    };
    // The first element, without a leading comma.
    int32_t body;
    const bool any = !hi || *hi > 0;
    if (!any) {
      body = g_.empty();
    } else {
      const int32_t first = prefix.empty() ? g_.rule_ref(item_rule) : prefix[0];
      const int32_t elements = g_.sequence({first, tail(1), ws});
      body = lo > 0 ? elements : g_.optional(elements);
    }
    const int32_t rule = g_.add_rule(g_.unique_name(base + "-array"));
    g_.set_body(rule, g_.sequence({g_.literal("["), ws, body, g_.literal("]")}));
    return g_.rule_ref(rule);
  }

  Grammar& g_;
  const json& root_;
  JsonGrammarOptions options_;
  int32_t ws_ = -1, value_ = -1, object_ = -1, char_ = -1, string_ = -1, number_ = -1;
  std::map<std::string, int32_t> refs_;
};

}  // namespace

const std::vector<KeywordInfo>& json_schema_keywords() {
  return kKeywords;
}

// How deep the text's arrays and objects nest, without parsing it (printing or converting a value recurses on
// its depth, and a schema sent as a string has not been through the HTTP body's depth bound).
int json_depth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

absl::StatusOr<int32_t> add_json_schema(Grammar& g, std::string_view schema_text, const JsonGrammarOptions& options) {
  if (json_depth(schema_text) > 2 * kMaxDepth)
    return absl::InvalidArgumentError(
        absl::StrCat("the JSON schema nests deeper than ", 2 * kMaxDepth, " levels of objects and arrays"));
  json schema = json::parse(schema_text, nullptr, /*allow_exceptions=*/false);
  if (schema.is_discarded()) return absl::InvalidArgumentError("the JSON schema is not valid JSON");
  SchemaConverter converter(g, schema, options);
  if (absl::Status s = converter.init(); !s.ok()) return s;
  return converter.visit(schema, "", 0);
}

absl::StatusOr<Grammar> json_schema_to_grammar(std::string_view schema_text, const JsonGrammarOptions& options) {
  Grammar g;
  const int32_t root = g.add_rule("root");
  absl::StatusOr<int32_t> body = add_json_schema(g, schema_text, options);
  if (!body.ok()) return body.status();
  g.set_body(root, *body);
  g.set_root(root);
  return g;
}

absl::StatusOr<Grammar> json_object_grammar(const JsonGrammarOptions& options) {
  return json_schema_to_grammar(R"({"type": "object"})", options);
}

}  // namespace bm::engine::grammar
