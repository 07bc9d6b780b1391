#include "engine/template/jinja_tests.h"

#include <algorithm>
#include <array>

#include "absl/status/status.h"
#include "engine/template/string_methods.h"

namespace bm::engine {
namespace {

constexpr std::array<std::string_view, 34> kTests = {
    "defined", "undefined",   "none",     "boolean",  "false",    "true",     "integer", "float",       "number",
    "string",  "mapping",     "iterable", "sequence", "callable", "odd",      "even",    "divisibleby", "eq",
    "equalto", "==",          "ne",       "!=",       "lt",       "lessthan", "<",       "le",          "<=",
    "gt",      "greaterthan", ">",        "ge",       ">=",       "in",       "sameas"};

absl::StatusOr<bool> ordered(std::string_view name, const Value& a, const Value& b) {
  bool lt = false;
  bool gt = false;
  if (a.is_number() && b.is_number()) {
    lt = a.as_double() < b.as_double();
    gt = a.as_double() > b.as_double();
    if (!a.is_double() && !b.is_double()) {
      lt = a.as_int() < b.as_int();
      gt = a.as_int() > b.as_int();
    }
  } else if (a.is_string() && b.is_string()) {
    lt = a.as_string() < b.as_string();
    gt = a.as_string() > b.as_string();
  } else {
    return absl::InvalidArgumentError(
        str_cat("test '", name, "': '<' not supported between '", a.type_name(), "' and '", b.type_name(), "'"));
  }
  if (name == "lt" || name == "lessthan" || name == "<") return lt;
  if (name == "gt" || name == "greaterthan" || name == ">") return gt;
  if (name == "le" || name == "<=") return !gt;
  return !lt;  // ge
}

absl::StatusOr<bool> case_test(const Value& v, bool upper) {
  if (!v.is_string()) return absl::InvalidArgumentError("tests 'lower'/'upper' need a string");
  CallArgs none;
  auto r = call_string_method(v.as_string(), upper ? "isupper" : "islower", none);
  if (!r.ok()) return r.status();
  return r->as_bool();
}

}  // namespace

bool is_known_test(std::string_view name) {
  return std::find(kTests.begin(), kTests.end(), name) != kTests.end() || name == "lower" || name == "upper";
}

absl::StatusOr<bool> apply_test(std::string_view name, const Value& v, const std::vector<Value>& args) {
  size_t want =
      (name == "divisibleby" || name == "eq" || name == "equalto" || name == "==" || name == "ne" || name == "!=" ||
       name == "lt" || name == "lessthan" || name == "<" || name == "le" || name == "<=" || name == "gt" ||
       name == "greaterthan" || name == ">" || name == "ge" || name == ">=" || name == "in" || name == "sameas")
          ? 1
          : 0;
  if (args.size() != want) {
    return absl::InvalidArgumentError(str_cat("test '", name, "' takes ", want, " argument(s)"));
  }
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.is_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_double();
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_object();
  if (name == "iterable") return v.is_array() || v.is_object() || v.is_string() || v.is_undefined();
  if (name == "sequence") return v.is_array() || v.is_object() || v.is_string() || v.is_undefined();
  if (name == "callable") return v.is_function();
  if (name == "lower") return case_test(v, false);
  if (name == "upper") return case_test(v, true);
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (!v.is_int() && !v.is_bool()) {
      return absl::InvalidArgumentError(str_cat("test '", name, "' needs an integer, not ", v.type_name()));
    }
    if (name == "divisibleby") {
      const Value& d = args[0];
      if (!d.is_int() && !d.is_bool()) return absl::InvalidArgumentError("test 'divisibleby' needs an integer");
      if (d.as_int() == 0) return absl::InvalidArgumentError("test 'divisibleby': division by zero");
      if (d.as_int() == -1) return true;
      return v.as_int() % d.as_int() == 0;
    }
    bool odd = v.as_int() % 2 != 0;
    return name == "odd" ? odd : !odd;
  }
  const Value& other = args[0];
  if (name == "eq" || name == "equalto" || name == "==") return v.equals(other);
  if (name == "ne" || name == "!=") return !v.equals(other);
  if (name == "sameas") {
    // Python `is`: singletons compare by value; other objects only when they are the same object, which a
    // copied Value cannot tell apart, so only the singleton cases are answered.
    if (v.is_none() || other.is_none() || v.is_bool() || other.is_bool()) {
      return v.kind() == other.kind() && v.equals(other);
    }
    return absl::InvalidArgumentError("test 'sameas' is only supported for none, true and false");
  }
  if (name == "in") {
    if (other.is_string()) {
      if (!v.is_string()) return absl::InvalidArgumentError("test 'in' on a string needs a string operand");
      return other.as_string().find(v.as_string()) != std::string::npos;
    }
    if (other.is_array()) {
      return std::any_of(other.items().begin(), other.items().end(), [&](const Value& e) { return e.equals(v); });
    }
    if (other.is_object()) return v.is_string() && other.find(v.as_string()) != nullptr;
    return absl::InvalidArgumentError(str_cat("test 'in': '", other.type_name(), "' is not a container"));
  }
  return ordered(name, v, other);
}

}  // namespace bm::engine
