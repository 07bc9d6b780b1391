#pragma once
// A Jinja/JSON value with Python semantics: the chat templates we render were written against jinja2 running
// on Python dicts/lists, so equality, truthiness, str() and json.dumps() follow Python, not C++.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace bm::engine {

class Value;

// Positional and keyword arguments of a call from a template.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

using NativeFunction = std::function<absl::StatusOr<Value>(const CallArgs&)>;

// json.dumps() options (Python defaults: separators ", " and ": ", or "," and ": " when indenting).
struct JsonFormat {
  std::optional<std::string> indent;          // one level's indentation; unset: everything on one line
  std::optional<std::string> item_separator;  // unset: Python's default for the indent mode
  std::string key_separator = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
  size_t max_bytes = SIZE_MAX;  // serialisation fails once the text would exceed this
};

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kDouble, kString, kArray, kObject, kNamespace, kFunction };
  using Entry = std::pair<std::string, Value>;

  Value() = default;  // undefined
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double d);
  static Value string(std::string s);
  static Value array(std::vector<Value> items, bool is_tuple = false);
  // Keys keep insertion order; a repeated key keeps its first position and takes the last value (Python
  // dicts).
  static Value object(std::vector<Entry> entries);
  static Value namespace_object(std::vector<Entry> entries);
  static Value function(std::string name, NativeFunction fn);
  static Value undefined(std::string name = "");

  // Parses JSON text (RFC 8259) into null/bool/int/double/string/array/object, keeping key order.
  static absl::StatusOr<Value> from_json(std::string_view json_text);
  // json.dumps(self) with Python's default separators; undefined, namespaces and functions become null.
  std::string to_json() const;
  // json.dumps with options; fails on undefined/namespace/function (Python raises TypeError) or on size.
  absl::StatusOr<std::string> to_json(const JsonFormat& format) const;
  // Python str(self) as jinja prints it ({{ x }}): undefined prints nothing, None prints "None".
  absl::StatusOr<std::string> to_display_string(size_t max_bytes = SIZE_MAX) const;
  // Python repr(self).
  absl::StatusOr<std::string> repr(size_t max_bytes = SIZE_MAX) const;

  Kind kind() const { return kind_; }
  const char* type_name() const;  // Python's type name: 'str', 'dict', 'NoneType', ...
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_double() const { return kind_ == Kind::kDouble; }
  bool is_number() const { return is_int() || is_double() || is_bool(); }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_tuple() const;
  bool is_object() const { return kind_ == Kind::kObject; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_function() const { return kind_ == Kind::kFunction; }

  bool as_bool() const { return bool_; }
  int64_t as_int() const { return is_bool() ? (bool_ ? 1 : 0) : int_; }
  double as_double() const;  // int, bool or double
  const std::string& as_string() const;
  const std::vector<Value>& items() const;    // array elements
  const std::vector<Entry>& entries() const;  // object or namespace entries
  const std::string& undefined_name() const;  // the name that was missing, for error messages
  absl::StatusOr<Value> call(const CallArgs& args) const;
  const std::string& function_name() const;

  // Object / namespace lookup; nullptr when absent.
  const Value* find(std::string_view key) const;
  // Namespaces are the only values a template may mutate ({% set ns.x = ... %}).
  void namespace_set(const std::string& key, Value v) const;
  // Drops a namespace's entries (breaks reference cycles a template made through it).
  void namespace_clear() const;

  bool truthy() const;
  // Python ==, including 1 == 1.0 == True and deep comparison of containers.
  bool equals(const Value& other) const;
  // Rough cost of walking this value (bytes of strings plus nodes); containers cache it at construction.
  size_t weight() const;
  // Nesting depth of lists/dicts (scalars: 0); bounded by the interpreter so walks cannot exhaust the stack.
  size_t depth() const;

 private:
  struct ArrayData;
  struct ObjectData;
  struct FunctionData;
  Kind kind_ = Kind::kUndefined;
  bool bool_ = false;
  int64_t int_ = 0;
  double double_ = 0;
  std::shared_ptr<const std::string> string_;  // string, or the missing name of an undefined
  std::shared_ptr<ArrayData> array_;
  std::shared_ptr<ObjectData> object_;
  std::shared_ptr<FunctionData> function_;
};

// Deeper values are refused when built by a template and when serialised (a namespace can contain itself).
inline constexpr size_t kMaxValueDepth = 600;

// Python's repr(float): shortest round-trip digits, exponent form outside 1e-4 <= |x| < 1e16.
std::string python_float_repr(double d);

}  // namespace bm::engine
