#include "engine/template/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <unordered_map>

#include "absl/status/status.h"
#include "common/check.h"
#include "engine/template/string_methods.h"
#include "nlohmann/json.hpp"

namespace bm::engine {

struct Value::ArrayData {
  std::vector<Value> items;
  bool is_tuple = false;
  size_t weight = 1;
  size_t depth = 1;
};

struct Value::ObjectData {
  std::vector<Entry> entries;
  std::unordered_map<std::string, size_t> index;
  size_t weight = 1;
  size_t depth = 1;
};

struct Value::FunctionData {
  std::string name;
  NativeFunction fn;
};

namespace {

size_t saturating_add(size_t a, size_t b) {
  return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

const std::string& empty_string() {
  static const std::string kEmpty;
  return kEmpty;
}

absl::Status too_large(size_t max_bytes) {
  return absl::ResourceExhaustedError(str_cat("chat template value is longer than the limit of ", max_bytes, " bytes"));
}

// Appends and checks the size limit as we go, so a huge nested value fails early instead of exhausting
// memory.
class Sink {
 public:
  explicit Sink(size_t max_bytes) : max_bytes_(max_bytes) {}
  bool add(std::string_view s) {
    if (out_.size() + s.size() > max_bytes_) {
      overflow_ = true;
      return false;
    }
    out_.append(s);
    return true;
  }
  bool overflow() const { return overflow_; }
  std::string& out() { return out_; }

 private:
  size_t max_bytes_;
  bool overflow_ = false;
  std::string out_;
};

void append_json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out.push_back('"');
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x20) {
      switch (c) {
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        default:
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
      }
      ++i;
    } else if (c == 0x7f && ensure_ascii) {
      out += "\\u007f";  // Python's ASCII mode escapes everything outside ' '..'~'
      ++i;
    } else if (c < 0x80 || !ensure_ascii) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else {
      size_t len = 0;
      char32_t cp = utf8_decode_one(s, i, &len);
      i += len;
      if (cp >= 0x10000) {
        cp -= 0x10000;
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (cp >> 10)),
                      static_cast<unsigned>(0xDC00 + (cp & 0x3FF)));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
      }
      out += buf;
    }
  }
  out.push_back('"');
}

std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return python_float_repr(d);
}

bool write_json(const Value& v, const JsonFormat& f, int depth, Sink& sink) {
  if (static_cast<size_t>(depth) > kMaxValueDepth) return false;
  std::string scratch;
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNamespace:
    case Value::Kind::kFunction:
      return false;
    case Value::Kind::kNone:
      return sink.add("null");
    case Value::Kind::kBool:
      return sink.add(v.as_bool() ? "true" : "false");
    case Value::Kind::kInt:
      return sink.add(std::to_string(v.as_int()));
    case Value::Kind::kDouble:
      return sink.add(json_float(v.as_double()));
    case Value::Kind::kString:
      append_json_string(scratch, v.as_string(), f.ensure_ascii);
      return sink.add(scratch);
    case Value::Kind::kArray:
    case Value::Kind::kObject: {
      bool is_array = v.is_array();
      size_t n = is_array ? v.items().size() : v.entries().size();
      if (n == 0) return sink.add(is_array ? "[]" : "{}");
      std::string item_sep = f.item_separator.value_or(f.indent ? "," : ", ");
      std::string newline_indent;
      if (f.indent) {
        newline_indent = "\n";
        for (int level = 0; level <= depth; ++level) newline_indent += *f.indent;
      }
      if (!sink.add(is_array ? "[" : "{")) return false;
      std::vector<const Value::Entry*> order;
      if (!is_array) {
        for (const auto& e : v.entries()) order.push_back(&e);
        if (f.sort_keys) {
          std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->first < b->first; });
        }
      }
      for (size_t i = 0; i < n; ++i) {
        if (i > 0 && !sink.add(item_sep)) return false;
        if (!sink.add(newline_indent)) return false;
        if (is_array) {
          if (!write_json(v.items()[i], f, depth + 1, sink)) return false;
        } else {
          scratch.clear();
          append_json_string(scratch, order[i]->first, f.ensure_ascii);
          if (!sink.add(scratch) || !sink.add(f.key_separator)) return false;
          if (!write_json(order[i]->second, f, depth + 1, sink)) return false;
        }
      }
      if (f.indent && !sink.add(std::string_view(newline_indent).substr(0, newline_indent.size() - f.indent->size()))) {
        return false;
      }
      return sink.add(is_array ? "]" : "}");
    }
  }
  return false;
}

bool is_printable(char32_t cp) {
  if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0xa0) || cp == 0xad) return false;
  if ((cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x2064)) {
    return false;
  }
  return cp != 0xfeff && !(cp >= 0xd800 && cp <= 0xdfff);
}

void append_python_string_repr(std::string& out, const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos;
  bool has_double = s.find('"') != std::string::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  out.push_back(quote);
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    size_t len = 0;
    char32_t cp = utf8_decode_one(s, i, &len);
    std::string_view raw(s.data() + i, len);
    i += len;
    if (cp == static_cast<char32_t>(quote) || cp == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (is_printable(cp)) {
      out.append(raw);
    } else if (cp < 0x100) {
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(cp));
      out += buf;
    } else {
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
      out += buf;
    }
  }
  out.push_back(quote);
}

bool write_repr(const Value& v, Sink& sink, size_t depth = 0) {
  if (depth > kMaxValueDepth) return false;
  std::string scratch;
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return true;  // jinja's Undefined stringifies to ""
    case Value::Kind::kNone:
      return sink.add("None");
    case Value::Kind::kBool:
      return sink.add(v.as_bool() ? "True" : "False");
    case Value::Kind::kInt:
      return sink.add(std::to_string(v.as_int()));
    case Value::Kind::kDouble:
      return sink.add(python_float_repr(v.as_double()));
    case Value::Kind::kString:
      append_python_string_repr(scratch, v.as_string());
      return sink.add(scratch);
    case Value::Kind::kFunction:
      return false;
    case Value::Kind::kArray: {
      bool tuple = v.is_tuple();
      if (!sink.add(tuple ? "(" : "[")) return false;
      for (size_t i = 0; i < v.items().size(); ++i) {
        if (i > 0 && !sink.add(", ")) return false;
        if (!write_repr(v.items()[i], sink, depth + 1)) return false;
      }
      if (tuple && v.items().size() == 1 && !sink.add(",")) return false;
      return sink.add(tuple ? ")" : "]");
    }
    case Value::Kind::kObject:
    case Value::Kind::kNamespace: {
      if (v.is_namespace() && !sink.add("<Namespace ")) return false;
      if (!sink.add("{")) return false;
      for (size_t i = 0; i < v.entries().size(); ++i) {
        if (i > 0 && !sink.add(", ")) return false;
        scratch.clear();
        append_python_string_repr(scratch, v.entries()[i].first);
        if (!sink.add(scratch) || !sink.add(": ")) return false;
        if (!write_repr(v.entries()[i].second, sink, depth + 1)) return false;
      }
      if (!sink.add("}")) return false;
      return !v.is_namespace() || sink.add(">");
    }
  }
  return false;
}

absl::StatusOr<Value> from_nlohmann(const nlohmann::ordered_json& j, int depth) {
  if (depth > 512) return absl::InvalidArgumentError("JSON value is nested deeper than 512 levels");
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) {
        return absl::InvalidArgumentError(str_cat("JSON integer ", u, " does not fit in 64 bits"));
      }
      return Value::integer(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value::number(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) {
        auto v = from_nlohmann(e, depth + 1);
        if (!v.ok()) return v.status();
        items.push_back(*std::move(v));
      }
      return Value::array(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      std::vector<Value::Entry> entries;
      for (const auto& [k, e] : j.items()) {
        auto v = from_nlohmann(e, depth + 1);
        if (!v.ok()) return v.status();
        entries.emplace_back(k, *std::move(v));
      }
      return Value::object(std::move(entries));
    }
    case nlohmann::ordered_json::value_t::binary:
    case nlohmann::ordered_json::value_t::discarded:
      break;
  }
  return absl::InvalidArgumentError("JSON value has an unsupported type");
}

}  // namespace

std::string python_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // "-d.ddde+XX"
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  int exponent = std::stoi(sci.substr(e + 1));
  std::string out = negative ? "-" : "";
  if (exponent >= -5 + 1 && exponent < 16) {
    if (exponent < 0) {
      out += "0.";
      out.append(static_cast<size_t>(-exponent - 1), '0');
      out += digits;
    } else if (static_cast<size_t>(exponent) + 1 >= digits.size()) {
      out += digits;
      out.append(static_cast<size_t>(exponent) + 1 - digits.size(), '0');
      out += ".0";
    } else {
      out.append(digits, 0, static_cast<size_t>(exponent) + 1);
      out.push_back('.');
      out.append(digits, static_cast<size_t>(exponent) + 1, std::string::npos);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) {
    out.push_back('.');
    out.append(digits, 1, std::string::npos);
  }
  std::snprintf(buf, sizeof buf, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out + buf;
}

Value Value::none() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.bool_ = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.int_ = i;
  return v;
}
Value Value::number(double d) {
  Value v;
  v.kind_ = Kind::kDouble;
  v.double_ = d;
  return v;
}
Value Value::string(std::string s) {
  Value v;
  v.kind_ = Kind::kString;
  v.string_ = std::make_shared<const std::string>(std::move(s));
  return v;
}
Value Value::undefined(std::string name) {
  Value v;
  if (!name.empty()) v.string_ = std::make_shared<const std::string>(std::move(name));
  return v;
}
Value Value::array(std::vector<Value> items, bool is_tuple) {
  Value v;
  v.kind_ = Kind::kArray;
  v.array_ = std::make_shared<ArrayData>();
  size_t w = 1;
  size_t d = 0;
  for (const auto& item : items) {
    w = saturating_add(w, item.weight());
    d = std::max(d, item.depth());
  }
  v.array_->depth = d + 1;
  v.array_->items = std::move(items);
  v.array_->is_tuple = is_tuple;
  v.array_->weight = w;
  return v;
}
Value Value::object(std::vector<Entry> entries) {
  Value v;
  v.kind_ = Kind::kObject;
  v.object_ = std::make_shared<ObjectData>();
  for (auto& [k, item] : entries) {
    auto [it, inserted] = v.object_->index.emplace(k, v.object_->entries.size());
    if (inserted) {
      v.object_->entries.emplace_back(std::move(k), std::move(item));
    } else {
      v.object_->entries[it->second].second = std::move(item);
    }
  }
  size_t w = 1;
  size_t d = 0;
  for (const auto& [k, item] : v.object_->entries) {
    w = saturating_add(w, saturating_add(k.size(), item.weight()));
    d = std::max(d, item.depth());
  }
  v.object_->weight = w;
  v.object_->depth = d + 1;
  return v;
}
Value Value::namespace_object(std::vector<Entry> entries) {
  Value v = object(std::move(entries));
  v.kind_ = Kind::kNamespace;
  return v;
}
Value Value::function(std::string name, NativeFunction fn) {
  Value v;
  v.kind_ = Kind::kFunction;
  v.function_ = std::make_shared<FunctionData>(FunctionData{std::move(name), std::move(fn)});
  return v;
}

bool Value::is_tuple() const {
  return is_array() && array_->is_tuple;
}

double Value::as_double() const {
  if (is_double()) return double_;
  return static_cast<double>(as_int());
}
const std::string& Value::as_string() const {
  return is_string() ? *string_ : empty_string();
}
const std::vector<Value>& Value::items() const {
  static const std::vector<Value> kEmpty;
  return is_array() ? array_->items : kEmpty;
}
const std::vector<Value::Entry>& Value::entries() const {
  static const std::vector<Entry> kEmpty;
  return object_ ? object_->entries : kEmpty;
}
const std::string& Value::undefined_name() const {
  return is_undefined() && string_ ? *string_ : empty_string();
}
const std::string& Value::function_name() const {
  return function_ ? function_->name : empty_string();
}

absl::StatusOr<Value> Value::call(const CallArgs& args) const {
  if (!is_function()) return absl::InvalidArgumentError(str_cat("'", type_name(), "' object is not callable"));
  return function_->fn(args);
}

const Value* Value::find(std::string_view key) const {
  if (!object_) return nullptr;
  auto it = object_->index.find(std::string(key));
  return it == object_->index.end() ? nullptr : &object_->entries[it->second].second;
}

void Value::namespace_set(const std::string& key, Value v) const {
  BM_CHECK(is_namespace());
  auto [it, inserted] = object_->index.emplace(key, object_->entries.size());
  if (inserted) {
    object_->entries.emplace_back(key, std::move(v));
  } else {
    object_->entries[it->second].second = std::move(v);
  }
}

void Value::namespace_clear() const {
  BM_CHECK(is_namespace());
  object_->entries.clear();
  object_->index.clear();
}

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kDouble:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kArray:
      return is_tuple() ? "tuple" : "list";
    case Kind::kObject:
      return "dict";
    case Kind::kNamespace:
      return "Namespace";
    case Kind::kFunction:
      return "function";
  }
  return "?";
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return bool_;
    case Kind::kInt:
      return int_ != 0;
    case Kind::kDouble:
      return double_ != 0;
    case Kind::kString:
      return !string_->empty();
    case Kind::kArray:
      return !array_->items.empty();
    case Kind::kObject:
      return !object_->entries.empty();
    case Kind::kNamespace:
    case Kind::kFunction:
      return true;
  }
  return false;
}

bool Value::equals(const Value& other) const {
  if (is_number() && other.is_number()) {
    if (is_double() || other.is_double()) return as_double() == other.as_double();
    return as_int() == other.as_int();
  }
  if (kind_ != other.kind_) return false;
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return true;
    case Kind::kString:
      return string_ == other.string_ || *string_ == *other.string_;
    case Kind::kArray: {
      if (array_ == other.array_) return true;
      if (array_->is_tuple != other.array_->is_tuple || array_->items.size() != other.array_->items.size()) {
        return false;
      }
      for (size_t i = 0; i < array_->items.size(); ++i) {
        if (!array_->items[i].equals(other.array_->items[i])) return false;
      }
      return true;
    }
    case Kind::kObject: {
      if (object_ == other.object_) return true;
      if (object_->entries.size() != other.object_->entries.size()) return false;
      for (const auto& [k, v] : object_->entries) {
        const Value* o = other.find(k);
        if (o == nullptr || !v.equals(*o)) return false;
      }
      return true;
    }
    case Kind::kNamespace:
      return object_ == other.object_;
    case Kind::kFunction:
      return function_ == other.function_;
    case Kind::kBool:
    case Kind::kInt:
    case Kind::kDouble:
      break;
  }
  return false;
}

size_t Value::weight() const {
  switch (kind_) {
    case Kind::kString:
      return string_->size() + 1;
    case Kind::kArray:
      return array_->weight;
    case Kind::kObject:
    case Kind::kNamespace:
      return object_->weight;
    case Kind::kUndefined:
    case Kind::kNone:
    case Kind::kBool:
    case Kind::kInt:
    case Kind::kDouble:
    case Kind::kFunction:
      break;
  }
  return 1;
}

size_t Value::depth() const {
  if (is_array()) return array_->depth;
  if (is_object()) return object_->depth;
  return is_namespace() ? 1 : 0;
}

absl::StatusOr<Value> Value::from_json(std::string_view json_text) {
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("text is not valid JSON");
  return from_nlohmann(j, 0);
}

std::string Value::to_json() const {
  Sink sink(SIZE_MAX);
  JsonFormat format;
  if (!write_json(*this, format, 0, sink)) return "null";
  return std::move(sink.out());
}

absl::StatusOr<std::string> Value::to_json(const JsonFormat& format) const {
  Sink sink(format.max_bytes);
  if (!write_json(*this, format, 0, sink)) {
    if (sink.overflow()) return too_large(format.max_bytes);
    return absl::InvalidArgumentError(
        "value is not JSON serializable (Undefined, namespace, function, or nested too deeply)");
  }
  return std::move(sink.out());
}

absl::StatusOr<std::string> Value::repr(size_t max_bytes) const {
  Sink sink(max_bytes);
  if (is_undefined()) return std::string("Undefined");
  if (!write_repr(*this, sink)) {
    if (sink.overflow()) return too_large(max_bytes);
    return absl::InvalidArgumentError("a function or a too deeply nested value cannot be printed");
  }
  return std::move(sink.out());
}

absl::StatusOr<std::string> Value::to_display_string(size_t max_bytes) const {
  if (is_string()) {
    if (string_->size() > max_bytes) return too_large(max_bytes);
    return *string_;
  }
  Sink sink(max_bytes);
  if (!write_repr(*this, sink)) {
    if (sink.overflow()) return too_large(max_bytes);
    return absl::InvalidArgumentError("a function or a too deeply nested value cannot be printed");
  }
  return std::move(sink.out());
}

}  // namespace bm::engine
