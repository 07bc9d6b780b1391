#include "engine/template/filters.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

#include "absl/status/status.h"
#include "engine/template/interpreter.h"
#include "engine/template/jinja_tests.h"
#include "engine/template/string_methods.h"

namespace bm::engine {
namespace {

constexpr std::array<std::string_view, 37> kFilters = {
    "tojson", "trim",    "length",  "count",  "lower",  "upper",    "capitalize", "title",      "first",   "last",
    "join",   "default", "d",       "string", "int",    "float",    "list",       "items",      "replace", "safe",
    "escape", "e",       "reverse", "sort",   "unique", "dictsort", "selectattr", "rejectattr", "select",  "reject",
    "map",    "abs",     "round",   "sum",    "min",    "max",      "indent"};

absl::Status filter_error(std::string_view name, std::string_view what) {
  return absl::InvalidArgumentError(str_cat("filter '", name, "': ", what));
}

// Binds positional-or-keyword parameters by name like a Python signature (after the operand).
class Params {
 public:
  Params(std::string_view filter, const CallArgs& args, std::vector<std::string_view> names)
      : filter_(filter), args_(args), names_(std::move(names)) {}

  absl::Status check() const {
    if (args_.positional.size() > names_.size()) {
      return filter_error(filter_, str_cat("takes at most ", names_.size(), " arguments"));
    }
    for (const auto& [k, v] : args_.keyword) {
      if (std::find(names_.begin(), names_.end(), k) == names_.end()) {
        return filter_error(filter_, str_cat("unexpected keyword argument '", k, "'"));
      }
    }
    return absl::OkStatus();
  }
  const Value* get(std::string_view name) const {
    for (size_t i = 0; i < names_.size(); ++i) {
      if (names_[i] == name && i < args_.positional.size()) return &args_.positional[i];
    }
    for (const auto& [k, v] : args_.keyword) {
      if (k == name) return &v;
    }
    return nullptr;
  }
  bool flag(std::string_view name, bool fallback) const {
    const Value* v = get(name);
    return v == nullptr ? fallback : v->truthy();
  }

 private:
  std::string_view filter_;
  const CallArgs& args_;
  std::vector<std::string_view> names_;
};

// jinja2's make_attrgetter: "a.b.0" walks getitem with integer parts.
absl::StatusOr<Value> attribute_of(Interpreter& in, const Value& item, const std::string& path) {
  Value cur = item;
  size_t begin = 0;
  while (begin <= path.size()) {
    size_t dot = path.find('.', begin);
    if (dot == std::string::npos) dot = path.size();
    std::string_view part = std::string_view(path).substr(begin, dot - begin);
    begin = dot + 1;
    Value key = Value::string(std::string(part));
    if (!part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      key = Value::integer(std::stoll(std::string(part)));
    }
    auto next = in.get_item(cur, key);
    if (!next.ok()) return next;
    cur = *std::move(next);
  }
  return cur;
}

Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) {
    CallArgs none;
    auto lowered = call_string_method(v.as_string(), "lower", none);
    if (lowered.ok()) return *lowered;
  }
  return v;
}

absl::StatusOr<Value> do_tojson(Interpreter& in, const Value& v, const CallArgs& args) {
  Params p("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"});
  if (auto st = p.check(); !st.ok()) return st;
  JsonFormat f;
  f.ensure_ascii = p.flag("ensure_ascii", false);
  f.sort_keys = p.flag("sort_keys", false);
  f.max_bytes = in.limits().max_output_bytes;
  // Python's json.dumps: an integer indents by that many spaces (none when negative; bool counts as int), a
  // string is used as it is. The bound only keeps one level's text small.
  constexpr int64_t kMaxIndent = 1024;
  if (const Value* indent = p.get("indent"); indent != nullptr && !indent->is_none()) {
    if (indent->is_string() && indent->as_string().size() <= kMaxIndent) {
      f.indent = indent->as_string();
    } else if ((indent->is_int() || indent->is_bool()) && indent->as_int() <= kMaxIndent) {
      f.indent = std::string(static_cast<size_t>(std::max<int64_t>(indent->as_int(), 0)), ' ');
    } else {
      return filter_error("tojson",
                          str_cat("indent must be an integer or a string of at most ", kMaxIndent, " characters"));
    }
  }
  if (const Value* seps = p.get("separators"); seps != nullptr && !seps->is_none()) {
    if (!seps->is_array() || seps->items().size() != 2 || !seps->items()[0].is_string() ||
        !seps->items()[1].is_string()) {
      return filter_error("tojson", "separators must be a pair of strings");
    }
    f.item_separator = seps->items()[0].as_string();
    f.key_separator = seps->items()[1].as_string();
  }
  auto st = in.charge(v.weight());
  if (!st.ok()) return st;
  auto text = v.to_json(f);
  if (!text.ok()) return filter_error("tojson", std::string(text.status().message()));
  return Value::string(*std::move(text));
}

// Python str.splitlines() without keepends.
std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  std::vector<char32_t> cps = utf8_decode(s);
  std::vector<char32_t> line;
  for (size_t i = 0; i < cps.size(); ++i) {
    char32_t c = cps[i];
    bool br = c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d || c == 0x1e || c == 0x85 ||
              c == 0x2028 || c == 0x2029;
    if (!br) {
      line.push_back(c);
      continue;
    }
    if (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ++i;
    lines.push_back(utf8_encode(line));
    line.clear();
  }
  if (!line.empty()) lines.push_back(utf8_encode(line));
  return lines;
}

absl::StatusOr<Value> do_indent(Interpreter& in, const Value& v, const CallArgs& args) {
  Params p("indent", args, {"width", "first", "blank"});
  if (auto st = p.check(); !st.ok()) return st;
  std::string indentation = "    ";
  if (const Value* w = p.get("width"); w != nullptr) {
    if (w->is_string()) {
      indentation = w->as_string();
    } else if (w->is_int() && w->as_int() >= 0 && w->as_int() <= 256) {
      indentation = std::string(static_cast<size_t>(w->as_int()), ' ');
    } else {
      return filter_error("indent", "width must be a string or an integer between 0 and 256");
    }
  }
  auto text = in.display(v);
  if (!text.ok()) return text.status();
  std::vector<std::string> lines = split_lines(*text + "\n");
  std::string out;
  if (p.flag("blank", false)) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) out += "\n" + indentation;
      out += lines[i];
    }
  } else if (!lines.empty()) {
    out = lines[0];
    for (size_t i = 1; i < lines.size(); ++i) out += "\n" + (lines[i].empty() ? "" : indentation + lines[i]);
  }
  if (p.flag("first", false)) out = indentation + out;
  return in.make_string(std::move(out));
}

std::string jinja_title(const std::string& s) {
  // jinja2 splits on runs of [-\s({\[<] and capitalises each piece (not str.title()).
  std::vector<char32_t> cps = utf8_decode(s);
  std::string out;
  bool at_word_start = true;
  CallArgs none;
  for (char32_t c : cps) {
    bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_python_space(c);
    std::string one;
    utf8_append(one, c);
    if (sep) {
      out += one;
      at_word_start = true;
      continue;
    }
    auto mapped = call_string_method(one, at_word_start ? "upper" : "lower", none);
    out += mapped.ok() ? mapped->as_string() : one;
    at_word_start = false;
  }
  return out;
}

absl::StatusOr<Value> do_sort(Interpreter& in, std::string_view name, const Value& v, const CallArgs& args) {
  bool is_dictsort = name == "dictsort";
  Params p(name, args,
           is_dictsort ? std::vector<std::string_view>{"case_sensitive", "by", "reverse"}
                       : std::vector<std::string_view>{"reverse", "case_sensitive", "attribute"});
  if (auto st = p.check(); !st.ok()) return st;
  bool reverse = p.flag("reverse", false);
  bool case_sensitive = p.flag("case_sensitive", false);
  std::vector<Value> items;
  if (is_dictsort) {
    if (!v.is_object()) return filter_error(name, "needs a dict");
    for (const auto& [k, item] : v.entries()) items.push_back(Value::array({Value::string(k), item}, true));
  } else {
    auto all = in.iterate(v);
    if (!all.ok()) return all.status();
    items = *std::move(all);
  }
  size_t by_index = 0;
  if (is_dictsort) {
    const Value* by = p.get("by");
    if (by != nullptr && by->is_string() && by->as_string() == "value") {
      by_index = 1;
    } else if (by != nullptr && !(by->is_string() && by->as_string() == "key")) {
      return filter_error(name, "'by' must be 'key' or 'value'");
    }
  }
  std::vector<std::pair<Value, Value>> keyed;
  for (const auto& item : items) {
    Value key = item;
    if (is_dictsort) {
      key = item.items()[by_index];
    } else if (const Value* a = p.get("attribute"); a != nullptr && !a->is_none()) {
      if (!a->is_string()) return filter_error(name, "attribute must be a string");
      auto k = attribute_of(in, item, a->as_string());
      if (!k.ok()) return k.status();
      key = *k;
    }
    keyed.emplace_back(sort_key(key, case_sensitive), item);
  }
  absl::Status failure;
  auto st = in.charge(keyed.size() * 8);
  if (!st.ok()) return st;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    if (!failure.ok()) return false;
    auto r = reverse ? in.less(b.first, a.first) : in.less(a.first, b.first);
    if (!r.ok()) {
      failure = r.status();
      return false;
    }
    return *r;
  });
  if (!failure.ok()) return failure;
  std::vector<Value> out;
  for (auto& [k, item] : keyed) out.push_back(std::move(item));
  return in.make_array(std::move(out));
}

absl::StatusOr<Value> do_select(Interpreter& in, std::string_view name, const Value& v, const CallArgs& args) {
  bool by_attribute = name == "selectattr" || name == "rejectattr";
  bool keep_when = name == "select" || name == "selectattr";
  if (!args.keyword.empty()) return filter_error(name, "takes no keyword arguments");
  size_t next = 0;
  std::string attribute;
  if (by_attribute) {
    if (args.positional.empty() || !args.positional[0].is_string()) return filter_error(name, "needs an attribute");
    attribute = args.positional[0].as_string();
    next = 1;
  }
  std::string test;
  if (next < args.positional.size()) {
    if (!args.positional[next].is_string()) return filter_error(name, "test name must be a string");
    test = args.positional[next].as_string();
    if (!is_known_test(test)) return filter_error(name, str_cat("unsupported test '", test, "'"));
    ++next;
  }
  std::vector<Value> test_args(args.positional.begin() + static_cast<long>(next), args.positional.end());
  auto items = in.iterate(v);
  if (!items.ok()) return items.status();
  std::vector<Value> out;
  for (const auto& item : *items) {
    Value probe = item;
    if (by_attribute) {
      auto a = attribute_of(in, item, attribute);
      if (!a.ok()) return a.status();
      probe = *a;
    }
    bool passed = false;
    if (test.empty()) {
      passed = probe.truthy();
    } else {
      auto r = apply_test(test, probe, test_args);
      if (!r.ok()) return r.status();
      passed = *r;
    }
    if (passed == keep_when) out.push_back(item);
  }
  return in.make_array(std::move(out));
}

absl::StatusOr<Value> do_map(Interpreter& in, const Value& v, const CallArgs& args) {
  auto items = in.iterate(v);
  if (!items.ok()) return items.status();
  std::vector<Value> out;
  const Value* attribute = nullptr;
  const Value* fallback = nullptr;
  for (const auto& [k, val] : args.keyword) {
    if (k == "attribute") {
      attribute = &val;
    } else if (k == "default") {
      fallback = &val;
    } else {
      return filter_error("map", str_cat("unexpected keyword argument '", k, "'"));
    }
  }
  if (attribute != nullptr) {
    if (!args.positional.empty() || !attribute->is_string()) {
      return filter_error("map", "attribute= must be a string and comes alone");
    }
    for (const auto& item : *items) {
      auto a = attribute_of(in, item, attribute->as_string());
      if (!a.ok()) return a.status();
      out.push_back(a->is_undefined() && fallback != nullptr ? *fallback : *a);
    }
    return in.make_array(std::move(out));
  }
  if (args.positional.empty() || !args.positional[0].is_string()) return filter_error("map", "needs a filter name");
  std::string filter = args.positional[0].as_string();
  if (!is_known_filter(filter)) return filter_error("map", str_cat("unsupported filter '", filter, "'"));
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  for (const auto& item : *items) {
    auto r = apply_filter(in, filter, item, rest);
    if (!r.ok()) return r.status();
    out.push_back(*std::move(r));
  }
  return in.make_array(std::move(out));
}

absl::StatusOr<Value> do_round(const Value& v, const CallArgs& args) {
  Params p("round", args, {"precision", "method"});
  if (auto st = p.check(); !st.ok()) return st;
  if (!v.is_number()) return filter_error("round", str_cat("needs a number, not ", v.type_name()));
  int64_t precision = 0;
  if (const Value* pr = p.get("precision"); pr != nullptr) {
    if (!pr->is_int() || pr->as_int() < 0 || pr->as_int() > 15) return filter_error("round", "precision 0..15");
    precision = pr->as_int();
  }
  std::string method = "common";
  if (const Value* m = p.get("method"); m != nullptr) {
    if (!m->is_string()) return filter_error("round", "method must be a string");
    method = m->as_string();
  }
  double scale = std::pow(10.0, static_cast<double>(precision));
  if (method == "floor") return Value::number(std::floor(v.as_double() * scale) / scale);
  if (method == "ceil") return Value::number(std::ceil(v.as_double() * scale) / scale);
  if (method != "common") return filter_error("round", "method must be common, ceil or floor");
  if (!v.is_double()) return Value::integer(v.as_int());  // Python round(int, n) keeps the int
  // Python rounds the exact binary value half-to-even; printf does the same.
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(precision), v.as_double());
  return Value::number(std::strtod(buf, nullptr));
}

absl::StatusOr<Value> do_min_max(Interpreter& in, std::string_view name, const Value& v, const CallArgs& args) {
  Params p(name, args, {"case_sensitive", "attribute"});
  if (auto st = p.check(); !st.ok()) return st;
  if (p.get("attribute") != nullptr) return filter_error(name, "attribute= is not supported");
  auto items = in.iterate(v);
  if (!items.ok()) return items.status();
  if (items->empty()) return Value::undefined();
  bool case_sensitive = p.flag("case_sensitive", false);
  Value best = (*items)[0];
  for (size_t i = 1; i < items->size(); ++i) {
    const Value& c = (*items)[i];
    auto r = name == "min" ? in.less(sort_key(c, case_sensitive), sort_key(best, case_sensitive))
                           : in.less(sort_key(best, case_sensitive), sort_key(c, case_sensitive));
    if (!r.ok()) return r.status();
    if (*r) best = c;
  }
  return best;
}

absl::StatusOr<Value> do_length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kString:
      return Value::integer(static_cast<int64_t>(utf8_length(v.as_string())));
    case Value::Kind::kArray:
      return Value::integer(static_cast<int64_t>(v.items().size()));
    case Value::Kind::kObject:
      return Value::integer(static_cast<int64_t>(v.entries().size()));
    case Value::Kind::kUndefined:
      return Value::integer(0);
    case Value::Kind::kNone:
    case Value::Kind::kBool:
    case Value::Kind::kInt:
    case Value::Kind::kDouble:
    case Value::Kind::kNamespace:
    case Value::Kind::kFunction:
      break;
  }
  return filter_error("length", str_cat("object of type '", v.type_name(), "' has no len()"));
}

absl::StatusOr<Value> do_int_float(const Value& v, std::string_view name, const CallArgs& args) {
  bool to_int = name == "int";
  Params p(name, args,
           to_int ? std::vector<std::string_view>{"default", "base"} : std::vector<std::string_view>{"default"});
  if (auto st = p.check(); !st.ok()) return st;
  const Value* def = p.get("default");
  Value fallback = def != nullptr ? *def : (to_int ? Value::integer(0) : Value::number(0.0));
  if (const Value* base = p.get("base"); base != nullptr && !(base->is_int() && base->as_int() == 10)) {
    return filter_error(name, "only base 10 is supported");
  }
  if (v.is_bool() || v.is_int()) return to_int ? Value::integer(v.as_int()) : Value::number(v.as_double());
  if (v.is_double()) {
    if (!to_int) return v;
    if (!std::isfinite(v.as_double()) || std::fabs(v.as_double()) >= 9.2e18) return fallback;
    return Value::integer(static_cast<int64_t>(v.as_double()));
  }
  if (!v.is_string()) return fallback;
  std::string s = v.as_string();
  size_t b = s.find_first_not_of(" \t\n\r\f\v");
  size_t e = s.find_last_not_of(" \t\n\r\f\v");
  if (b == std::string::npos) return fallback;
  s = s.substr(b, e - b + 1);
  char* end = nullptr;
  if (to_int) {
    errno = 0;
    long long i = std::strtoll(s.c_str(), &end, 10);
    if (end == s.c_str() + s.size() && errno == 0 && s.find('.') == std::string::npos) return Value::integer(i);
    // jinja2 falls back to int(float(s)) for "3.5"
  }
  double d = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || s.find_first_of("xXpP") != std::string::npos) return fallback;
  if (!to_int) return Value::number(d);
  if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return fallback;
  return Value::integer(static_cast<int64_t>(d));
}

}  // namespace

bool is_known_filter(std::string_view name) {
  return std::find(kFilters.begin(), kFilters.end(), name) != kFilters.end();
}

absl::StatusOr<Value> apply_filter(Interpreter& in, std::string_view name, const Value& v, const CallArgs& args) {
  auto st = in.charge(1);
  if (!st.ok()) return st;
  bool no_args = args.positional.empty() && args.keyword.empty();
  auto needs_no_args = [&]() -> absl::Status {
    return no_args ? absl::OkStatus() : filter_error(name, "takes no arguments");
  };
  if (name == "tojson") return do_tojson(in, v, args);
  if (name == "default" || name == "d") {
    Params p(name, args, {"default_value", "boolean"});
    if (auto s = p.check(); !s.ok()) return s;
    bool use_default = v.is_undefined() || (p.flag("boolean", false) && !v.truthy());
    if (!use_default) return v;
    const Value* def = p.get("default_value");
    return def != nullptr ? *def : Value::string("");
  }
  if (name == "length" || name == "count") {
    if (auto s = needs_no_args(); !s.ok()) return s;
    return do_length(v);
  }
  if (name == "trim" || name == "lower" || name == "upper" || name == "capitalize" || name == "title" ||
      name == "string" || name == "safe" || name == "escape" || name == "e" || name == "replace" ||
      name == "wordcount") {
    auto text = in.display(v);
    if (!text.ok()) return text.status();
    if (name == "trim") {
      Params p(name, args, {"chars"});
      if (auto s = p.check(); !s.ok()) return s;
      CallArgs strip_args;
      if (const Value* chars = p.get("chars"); chars != nullptr) strip_args.positional.push_back(*chars);
      return call_string_method(*text, "strip", strip_args);
    }
    if (name == "replace") {
      Params p(name, args, {"old", "new", "count"});
      if (auto s = p.check(); !s.ok()) return s;
      CallArgs r;
      for (auto key : {"old", "new", "count"}) {
        const Value* a = p.get(key);
        if (a == nullptr) break;
        if (std::string_view(key) == "count" && a->is_none()) break;
        r.positional.push_back(*a);
      }
      auto out = call_string_method(*text, "replace", r);
      if (!out.ok()) return out.status();
      return in.make_string(out->as_string());
    }
    if (auto s = needs_no_args(); !s.ok()) return s;
    if (name == "string" || name == "safe") return Value::string(*std::move(text));
    if (name == "title") return Value::string(jinja_title(*text));
    if (name == "wordcount") return filter_error(name, "is not supported (needs Unicode word boundaries)");
    if (name == "escape" || name == "e") {
      std::string out;
      for (char c : *text) {
        switch (c) {
          case '&':
            out += "&amp;";
            break;
          case '<':
            out += "&lt;";
            break;
          case '>':
            out += "&gt;";
            break;
          case '"':
            out += "&#34;";
            break;
          case '\'':
            out += "&#39;";
            break;
          default:
            out.push_back(c);
        }
      }
      return in.make_string(std::move(out));
    }
    if (name == "capitalize") {
      // str.capitalize(): first upper, the rest lower.
      CallArgs none;
      std::vector<char32_t> cps = utf8_decode(*text);
      if (cps.empty()) return Value::string("");
      std::string head;
      utf8_append(head, cps[0]);
      auto up = call_string_method(head, "upper", none);
      auto low = call_string_method(text->substr(head.size()), "lower", none);
      if (!up.ok() || !low.ok()) return filter_error(name, "failed");
      return Value::string(up->as_string() + low->as_string());
    }
    CallArgs none;
    return call_string_method(*text, name, none);
  }
  if (name == "first" || name == "last") {
    if (auto s = needs_no_args(); !s.ok()) return s;
    auto items = in.iterate(v);
    if (!items.ok()) return items.status();
    if (items->empty()) return Value::undefined();
    return name == "first" ? items->front() : items->back();
  }
  if (name == "join") {
    Params p(name, args, {"d", "attribute"});
    if (auto s = p.check(); !s.ok()) return s;
    auto items = in.iterate(v);
    if (!items.ok()) return items.status();
    const Value* sep = p.get("d");
    std::string separator;
    if (sep != nullptr) {
      auto s = in.display(*sep);
      if (!s.ok()) return s.status();
      separator = *s;
    }
    std::string out;
    for (size_t i = 0; i < items->size(); ++i) {
      Value item = (*items)[i];
      if (const Value* a = p.get("attribute"); a != nullptr && !a->is_none()) {
        if (!a->is_string()) return filter_error(name, "attribute must be a string");
        auto got = attribute_of(in, item, a->as_string());
        if (!got.ok()) return got.status();
        item = *got;
      }
      auto text = in.display(item);
      if (!text.ok()) return text.status();
      if (i > 0) out += separator;
      out += *text;
      if (out.size() > in.limits().max_output_bytes) return in.make_string(std::move(out));
    }
    return in.make_string(std::move(out));
  }
  if (name == "int" || name == "float") return do_int_float(v, name, args);
  if (name == "list") {
    if (auto s = needs_no_args(); !s.ok()) return s;
    auto items = in.iterate(v);
    if (!items.ok()) return items.status();
    return in.make_array(*std::move(items));
  }
  if (name == "items") {
    if (auto s = needs_no_args(); !s.ok()) return s;
    if (v.is_undefined()) return Value::array({});
    if (!v.is_object()) return filter_error(name, "can only process mappings");
    std::vector<Value> out;
    for (const auto& [k, item] : v.entries()) out.push_back(Value::array({Value::string(k), item}, true));
    return in.make_array(std::move(out));
  }
  if (name == "reverse") {
    if (auto s = needs_no_args(); !s.ok()) return s;
    if (v.is_string()) {
      std::vector<char32_t> cps = utf8_decode(v.as_string());
      std::reverse(cps.begin(), cps.end());
      return Value::string(utf8_encode(cps));
    }
    auto items = in.iterate(v);
    if (!items.ok()) return items.status();
    std::reverse(items->begin(), items->end());
    return in.make_array(*std::move(items));
  }
  if (name == "sort" || name == "dictsort") return do_sort(in, name, v, args);
  if (name == "unique") {
    Params p(name, args, {"case_sensitive", "attribute"});
    if (auto s = p.check(); !s.ok()) return s;
    if (p.get("attribute") != nullptr) return filter_error(name, "attribute= is not supported");
    bool case_sensitive = p.flag("case_sensitive", false);
    auto items = in.iterate(v);
    if (!items.ok()) return items.status();
    std::vector<Value> out;
    std::vector<Value> seen;
    for (const auto& item : *items) {
      Value key = sort_key(item, case_sensitive);
      auto s = in.charge(seen.size());
      if (!s.ok()) return s;
      if (std::none_of(seen.begin(), seen.end(), [&](const Value& x) { return x.equals(key); })) {
        seen.push_back(key);
        out.push_back(item);
      }
    }
    return in.make_array(std::move(out));
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    return do_select(in, name, v, args);
  }
  if (name == "map") return do_map(in, v, args);
  if (name == "abs") {
    if (auto s = needs_no_args(); !s.ok()) return s;
    if (v.is_double()) return Value::number(std::fabs(v.as_double()));
    if (v.is_int() || v.is_bool()) {
      if (v.as_int() == INT64_MIN) return filter_error(name, "integer overflow");
      return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
    }
    return filter_error(name, str_cat("bad operand type '", v.type_name(), "'"));
  }
  if (name == "round") return do_round(v, args);
  if (name == "sum") {
    Params p(name, args, {"attribute", "start"});
    if (auto s = p.check(); !s.ok()) return s;
    if (p.get("attribute") != nullptr) return filter_error(name, "attribute= is not supported");
    auto items = in.iterate(v);
    if (!items.ok()) return items.status();
    const Value* start = p.get("start");
    Value total = start != nullptr ? *start : Value::integer(0);
    for (const auto& item : *items) {
      if (!item.is_number() || !total.is_number()) return filter_error(name, "can only add numbers");
      if (total.is_double() || item.is_double()) {
        total = Value::number(total.as_double() + item.as_double());
      } else {
        int64_t r = 0;
        if (__builtin_add_overflow(total.as_int(), item.as_int(), &r)) return filter_error(name, "integer overflow");
        total = Value::integer(r);
      }
    }
    return total;
  }
  if (name == "min" || name == "max") return do_min_max(in, name, v, args);
  if (name == "indent") return do_indent(in, v, args);
  return filter_error(name, "is not supported");
}

}  // namespace bm::engine
