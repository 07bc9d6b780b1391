#include "engine/template/interpreter.h"

#include <chrono>
#include <cmath>
#include <ctime>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "engine/template/filters.h"
#include "engine/template/jinja_tests.h"
#include "engine/template/string_methods.h"

namespace bm::engine {

struct Interpreter::Scope {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;
};

namespace {

absl::Status type_error(std::string_view what) {
  return absl::InvalidArgumentError(std::string(what));
}

absl::Status undefined_error(const Value& v) {
  if (v.undefined_name().empty()) return absl::InvalidArgumentError("use of an undefined value");
  return absl::InvalidArgumentError(str_cat("'", v.undefined_name(), "' is undefined"));
}

const Value* keyword(const CallArgs& args, std::string_view name) {
  for (const auto& [k, v] : args.keyword) {
    if (k == name) return &v;
  }
  return nullptr;
}

// Python index normalisation; false when out of range.
bool normalize_index(int64_t index, size_t size, size_t* out) {
  int64_t n = static_cast<int64_t>(size);
  if (index < 0) index += n;
  if (index < 0 || index >= n) return false;
  *out = static_cast<size_t>(index);
  return true;
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t floor_mod(int64_t a, int64_t b) {
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

}  // namespace

Interpreter::~Interpreter() {
  for (const auto& ns : namespaces_) ns.namespace_clear();
}

absl::Status Interpreter::charge(size_t work) {
  steps_ += static_cast<int64_t>(std::min<size_t>(work, static_cast<size_t>(INT64_MAX / 2)));
  if (steps_ > limits_.max_steps) {
    return absl::ResourceExhaustedError(
        str_cat("chat template exceeded its work limit of ", limits_.max_steps, " steps"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Value> Interpreter::make_string(std::string s) {
  if (s.size() > limits_.max_output_bytes) {
    return absl::ResourceExhaustedError(
        str_cat("chat template built a string longer than the limit of ", limits_.max_output_bytes, " bytes"));
  }
  auto st = charge(s.size() / 64);
  if (!st.ok()) return st;
  return Value::string(std::move(s));
}

absl::StatusOr<Value> Interpreter::make_array(std::vector<Value> items, bool is_tuple) {
  Value v = Value::array(std::move(items), is_tuple);
  if (v.depth() > kMaxValueDepth / 2) {
    return absl::ResourceExhaustedError(str_cat("chat template built a list nested deeper than ", kMaxValueDepth / 2));
  }
  if (v.weight() > limits_.max_value_weight) {
    return absl::ResourceExhaustedError(
        str_cat("chat template built a list larger than the limit of ", limits_.max_value_weight));
  }
  auto st = charge(v.items().size());
  if (!st.ok()) return st;
  return v;
}

Value Interpreter::make_namespace(std::vector<Value::Entry> entries) {
  Value ns = Value::namespace_object(std::move(entries));
  namespaces_.push_back(ns);
  return ns;
}

absl::Status Interpreter::append_output(std::string& out, std::string_view text) {
  if (out.size() + text.size() > limits_.max_output_bytes) {
    return absl::ResourceExhaustedError(
        str_cat("chat template output is longer than the limit of ", limits_.max_output_bytes, " bytes"));
  }
  out.append(text);
  return charge(text.size() / 64);
}

absl::StatusOr<std::string> Interpreter::display(const Value& v) {
  if (v.is_function()) return type_error("a function cannot be printed by a chat template");
  auto st = charge(v.weight());
  if (!st.ok()) return st;
  return v.to_display_string(limits_.max_output_bytes);
}

absl::Status Interpreter::with_line(absl::Status st, int line) const {
  if (st.ok() || raised_ || absl::StartsWith(st.message(), "chat template line ")) return st;
  return absl::Status(st.code(), str_cat("chat template line ", line, ": ", st.message()));
}

Value Interpreter::lookup(const std::string& name, const Scope& scope) const {
  for (const Scope* s = &scope; s != nullptr; s = s->parent.get()) {
    auto it = s->vars.find(name);
    if (it != s->vars.end()) return it->second;
  }
  return Value::undefined(name);
}

absl::StatusOr<Value> Interpreter::call(const Value& callee, const CallArgs& args) {
  if (callee.is_undefined()) return undefined_error(callee);
  if (!callee.is_function()) return type_error(str_cat("'", callee.type_name(), "' object is not callable"));
  if (call_depth_ >= limits_.max_call_depth) {
    return absl::ResourceExhaustedError(
        str_cat("chat template calls are nested deeper than the limit of ", limits_.max_call_depth));
  }
  auto st = charge(1 + args.positional.size() + args.keyword.size());
  if (!st.ok()) return st;
  ++call_depth_;
  auto result = callee.call(args);
  --call_depth_;
  return result;
}

void Interpreter::install_builtins(std::vector<std::pair<std::string, Value>>& globals) {
  globals.emplace_back("range", Value::function("range", [this](const CallArgs& args) -> absl::StatusOr<Value> {
                         if (!args.keyword.empty() || args.positional.empty() || args.positional.size() > 3) {
                           return type_error("range() takes 1 to 3 positional integer arguments");
                         }
                         int64_t v[3] = {0, 0, 1};
                         for (size_t i = 0; i < args.positional.size(); ++i) {
                           const Value& a = args.positional[i];
                           if (!a.is_int() && !a.is_bool()) return type_error("range() arguments must be integers");
                           v[args.positional.size() == 1 ? 1 : i] = a.as_int();
                         }
                         if (v[2] == 0) return type_error("range() arg 3 must not be zero");
                         std::vector<Value> items;
                         for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2]) {
                           if (static_cast<int64_t>(items.size()) >= limits_.max_range) {
                             return absl::ResourceExhaustedError(
                                 str_cat("range() is longer than the sandbox limit of ", limits_.max_range));
                           }
                           items.push_back(Value::integer(i));
                           if ((v[2] > 0 && i > INT64_MAX - v[2]) || (v[2] < 0 && i < INT64_MIN - v[2])) break;
                         }
                         return make_array(std::move(items));
                       }));
  auto make_mapping = [this](const CallArgs& args, bool is_namespace) -> absl::StatusOr<Value> {
    std::vector<Value::Entry> entries;
    if (args.positional.size() > 1) return type_error("namespace()/dict() take at most one positional argument");
    if (!args.positional.empty()) {
      const Value& init = args.positional[0];
      if (!init.is_object() && !init.is_namespace()) {
        return type_error("namespace()/dict() positional argument must be a mapping");
      }
      entries = init.entries();
    }
    for (const auto& kv : args.keyword) entries.push_back(kv);
    if (is_namespace) {
      for (const auto& [k, v] : entries) {
        if (!k.empty() && k[0] == '_') {
          return type_error(
              str_cat("chat templates cannot store underscore-prefixed attributes on a "
                      "namespace, but got '",
                      k, "'"));
        }
      }
      return make_namespace(std::move(entries));
    }
    return Value::object(std::move(entries));
  };
  globals.emplace_back("namespace", Value::function("namespace", [make_mapping](const CallArgs& args) {
                         return make_mapping(args, true);
                       }));
  globals.emplace_back(
      "dict", Value::function("dict", [make_mapping](const CallArgs& args) { return make_mapping(args, false); }));
  globals.emplace_back("raise_exception", Value::function("raise_exception", [this](const CallArgs& args) {
                         raised_ = true;
                         std::string message = "raise_exception() called";
                         if (!args.positional.empty() && args.positional[0].is_string())
                           message = args.positional[0].as_string();
                         return absl::StatusOr<Value>(absl::InvalidArgumentError(message));
                       }));
  globals.emplace_back("strftime_now",
                       Value::function("strftime_now", [](const CallArgs& args) -> absl::StatusOr<Value> {
                         if (args.positional.size() != 1 || !args.positional[0].is_string()) {
                           return type_error("strftime_now() takes one format string");
                         }
                         std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
                         std::tm local{};
                         localtime_r(&now, &local);
                         char buf[512];
                         size_t n = std::strftime(buf, sizeof buf, args.positional[0].as_string().c_str(), &local);
                         return Value::string(std::string(buf, n));
                       }));
}

absl::StatusOr<std::string> Interpreter::render(const Body& body, std::vector<std::pair<std::string, Value>> globals) {
  auto builtins = std::make_shared<Scope>();
  std::vector<std::pair<std::string, Value>> builtin_list;
  install_builtins(builtin_list);
  for (auto& [k, v] : builtin_list) builtins->vars[k] = std::move(v);
  auto root = std::make_shared<Scope>();
  root->parent = builtins;
  for (auto& [k, v] : globals) root->vars[k] = std::move(v);
  std::string out;
  auto flow = exec_body(body, root, out);
  root->vars.clear();
  builtins->vars.clear();
  if (!flow.ok()) return flow.status();
  return out;
}

absl::StatusOr<Interpreter::Flow> Interpreter::exec_body(const Body& body, const std::shared_ptr<Scope>& scope,
                                                         std::string& out) {
  for (const auto& stmt : body) {
    auto flow = exec(*stmt, scope, out);
    if (!flow.ok()) return with_line(flow.status(), stmt->line);
    if (*flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

absl::StatusOr<Interpreter::Flow> Interpreter::exec(const Stmt& stmt, const std::shared_ptr<Scope>& scope,
                                                    std::string& out) {
  auto st = charge(1);
  if (!st.ok()) return st;
  switch (stmt.kind) {
    case Stmt::Kind::kText:
      st = append_output(out, stmt.text);
      if (!st.ok()) return st;
      return Flow::kNormal;
    case Stmt::Kind::kOutput: {
      auto v = eval(*stmt.expr, *scope);
      if (!v.ok()) return v.status();
      auto text = display(*v);
      if (!text.ok()) return text.status();
      st = append_output(out, *text);
      if (!st.ok()) return st;
      return Flow::kNormal;
    }
    case Stmt::Kind::kIf:
      for (size_t i = 0; i < stmt.conditions.size(); ++i) {
        auto cond = eval(*stmt.conditions[i], *scope);
        if (!cond.ok()) return cond.status();
        if (cond->truthy()) return exec_body(stmt.bodies[i], scope, out);
      }
      return exec_body(stmt.else_body, scope, out);
    case Stmt::Kind::kFor:
      return exec_for(stmt, scope, out);
    case Stmt::Kind::kSet: {
      auto v = eval(*stmt.expr, *scope);
      if (!v.ok()) return v.status();
      st = assign(stmt.target, *std::move(v), *scope);
      if (!st.ok()) return st;
      return Flow::kNormal;
    }
    case Stmt::Kind::kSetBlock: {
      std::string captured;
      auto flow = exec_body(stmt.bodies[0], scope, captured);
      if (!flow.ok()) return flow.status();
      st = assign(stmt.target, Value::string(std::move(captured)), *scope);
      if (!st.ok()) return st;
      return *flow;
    }
    case Stmt::Kind::kMacro:
      st = define_macro(stmt, scope);
      if (!st.ok()) return st;
      return Flow::kNormal;
    case Stmt::Kind::kBreak:
      return Flow::kBreak;
    case Stmt::Kind::kContinue:
      return Flow::kContinue;
    case Stmt::Kind::kGeneration:
      return exec_body(stmt.bodies[0], scope, out);
  }
  return Flow::kNormal;
}

absl::Status Interpreter::assign(const Target& target, Value value, Scope& scope) {
  if (!target.attribute.empty()) {
    Value ns = lookup(target.names[0], scope);
    if (!ns.is_namespace()) {
      return type_error(str_cat("cannot assign attribute '", target.attribute, "' on '", target.names[0],
                                "', which is not a namespace"));
    }
    if (target.attribute[0] == '_') {
      return type_error("chat templates cannot store underscore-prefixed attributes on a namespace");
    }
    ns.namespace_set(target.attribute, std::move(value));
    return absl::OkStatus();
  }
  if (!target.is_tuple) {
    scope.vars[target.names[0]] = std::move(value);
    return absl::OkStatus();
  }
  auto items = iterate(value);
  if (!items.ok()) return items.status();
  if (items->size() != target.names.size()) {
    return type_error(str_cat("cannot unpack ", items->size(), " values into ", target.names.size(), " names"));
  }
  for (size_t i = 0; i < items->size(); ++i) scope.vars[target.names[i]] = (*items)[i];
  return absl::OkStatus();
}

absl::StatusOr<Interpreter::Flow> Interpreter::exec_for(const Stmt& stmt, const std::shared_ptr<Scope>& scope,
                                                        std::string& out) {
  auto iterable = eval(*stmt.expr, *scope);
  if (!iterable.ok()) return iterable.status();
  auto all = iterate(*iterable);
  if (!all.ok()) return all.status();
  std::vector<Value> items;
  if (stmt.filter) {
    for (const auto& item : *all) {
      auto probe = std::make_shared<Scope>();
      probe->parent = scope;
      auto st = assign(stmt.target, item, *probe);
      if (!st.ok()) return st;
      auto keep = eval(*stmt.filter, *probe);
      if (!keep.ok()) return keep.status();
      if (keep->truthy()) items.push_back(item);
    }
  } else {
    items = *std::move(all);
  }
  if (items.empty()) {
    auto else_scope = std::make_shared<Scope>();
    else_scope->parent = scope;
    return exec_body(stmt.else_body, else_scope, out);
  }
  auto loop_cycle = [](int64_t index0) {
    return Value::function("loop.cycle", [index0](const CallArgs& args) -> absl::StatusOr<Value> {
      if (args.positional.empty()) return type_error("loop.cycle() needs at least one argument");
      return args.positional[static_cast<size_t>(index0) % args.positional.size()];
    });
  };
  int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    auto st = charge(1);
    if (!st.ok()) return st;
    auto body_scope = std::make_shared<Scope>();
    body_scope->parent = scope;
    st = assign(stmt.target, items[static_cast<size_t>(i)], *body_scope);
    if (!st.ok()) return st;
    body_scope->vars["loop"] = Value::object({
        {"index", Value::integer(i + 1)},
        {"index0", Value::integer(i)},
        {"revindex", Value::integer(n - i)},
        {"revindex0", Value::integer(n - i - 1)},
        {"first", Value::boolean(i == 0)},
        {"last", Value::boolean(i == n - 1)},
        {"length", Value::integer(n)},
        {"depth", Value::integer(1)},
        {"depth0", Value::integer(0)},
        {"previtem", i > 0 ? items[static_cast<size_t>(i - 1)] : Value::undefined("loop.previtem")},
        {"nextitem", i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value::undefined("loop.nextitem")},
        {"cycle", loop_cycle(i)},
    });
    auto flow = exec_body(stmt.bodies[0], body_scope, out);
    if (!flow.ok()) return flow.status();
    if (*flow == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

absl::Status Interpreter::define_macro(const Stmt& stmt, const std::shared_ptr<Scope>& scope) {
  std::weak_ptr<Scope> defining = scope;
  const Stmt* macro = &stmt;
  scope->vars[stmt.name] = Value::function(
      stmt.name, [this, macro, defining](const CallArgs& args) { return call_macro(*macro, defining, args); });
  return absl::OkStatus();
}

absl::StatusOr<Value> Interpreter::call_macro(const Stmt& stmt, const std::weak_ptr<Scope>& defining_scope,
                                              const CallArgs& args) {
  std::shared_ptr<Scope> parent = defining_scope.lock();
  if (!parent) return type_error(str_cat("macro '", stmt.name, "' called outside the scope that defined it"));
  if (args.positional.size() > stmt.params.size()) {
    return type_error(str_cat("macro '", stmt.name, "' takes not more than ", stmt.params.size(), " argument(s)"));
  }
  auto scope = std::make_shared<Scope>();
  scope->parent = parent;
  for (const auto& [k, v] : args.keyword) {
    bool known = false;
    for (const auto& p : stmt.params) known = known || p.name == k;
    if (!known) return type_error(str_cat("macro '", stmt.name, "' takes no keyword argument '", k, "'"));
  }
  for (size_t i = 0; i < stmt.params.size(); ++i) {
    const MacroParam& p = stmt.params[i];
    if (i < args.positional.size()) {
      scope->vars[p.name] = args.positional[i];
    } else if (const Value* kw = keyword(args, p.name); kw != nullptr) {
      scope->vars[p.name] = *kw;
    } else if (p.default_value) {
      auto v = eval(*p.default_value, *scope);
      if (!v.ok()) return v.status();
      scope->vars[p.name] = *std::move(v);
    } else {
      scope->vars[p.name] = Value::undefined(p.name);
    }
  }
  std::string out;
  auto flow = exec_body(stmt.bodies[0], scope, out);
  if (!flow.ok()) return flow.status();
  return make_string(std::move(out));
}

absl::StatusOr<std::vector<Value>> Interpreter::iterate(const Value& v) {
  auto st = charge(v.weight() / 16);
  if (!st.ok()) return st;
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return std::vector<Value>{};
    case Value::Kind::kArray:
      return v.items();
    case Value::Kind::kObject: {
      std::vector<Value> keys;
      keys.reserve(v.entries().size());
      for (const auto& [k, item] : v.entries()) keys.push_back(Value::string(k));
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      for (char32_t cp : utf8_decode(v.as_string())) {
        std::string one;
        utf8_append(one, cp);
        chars.push_back(Value::string(std::move(one)));
      }
      return chars;
    }
    case Value::Kind::kNone:
    case Value::Kind::kBool:
    case Value::Kind::kInt:
    case Value::Kind::kDouble:
    case Value::Kind::kNamespace:
    case Value::Kind::kFunction:
      break;
  }
  return type_error(str_cat("'", v.type_name(), "' object is not iterable"));
}

absl::StatusOr<bool> Interpreter::equals(const Value& a, const Value& b) {
  auto st = charge(std::min(a.weight(), b.weight()));
  if (!st.ok()) return st;
  return a.equals(b);
}

absl::StatusOr<bool> Interpreter::contains(const Value& container, const Value& item) {
  auto st = charge(container.weight());
  if (!st.ok()) return st;
  switch (container.kind()) {
    case Value::Kind::kString:
      if (!item.is_string()) {
        return type_error(str_cat("'in <string>' requires string as left operand, not ", item.type_name()));
      }
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::kArray:
      for (const auto& e : container.items()) {
        if (e.equals(item)) return true;
      }
      return false;
    case Value::Kind::kObject:
      if (!item.is_string()) return false;
      return container.find(item.as_string()) != nullptr;
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kNone:
    case Value::Kind::kBool:
    case Value::Kind::kInt:
    case Value::Kind::kDouble:
    case Value::Kind::kNamespace:
    case Value::Kind::kFunction:
      break;
  }
  return type_error(str_cat("argument of type '", container.type_name(), "' is not iterable"));
}

absl::StatusOr<bool> Interpreter::less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_double() || b.is_double()) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) {
    auto st = charge(std::min(a.weight(), b.weight()) / 16);
    if (!st.ok()) return st;
    return a.as_string() < b.as_string();
  }
  if (a.is_array() && b.is_array() && a.is_tuple() == b.is_tuple()) {
    const auto& x = a.items();
    const auto& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      auto same = equals(x[i], y[i]);
      if (!same.ok()) return same.status();
      if (!*same) return less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  return type_error(str_cat("'<' not supported between instances of '", a.type_name(), "' and '", b.type_name(), "'"));
}

absl::StatusOr<Value> Interpreter::get_attribute(const Value& object, const std::string& name) {
  switch (object.kind()) {
    case Value::Kind::kUndefined:
      return type_error(str_cat(object.undefined_name().empty() ? "undefined value" : object.undefined_name(),
                                " is undefined (reading its attribute '", name, "')"));
    case Value::Kind::kObject: {
      if (name == "items" || name == "keys" || name == "values" || name == "get") {
        Value self = object;
        return Value::function("dict." + name, [this, self, name](const CallArgs& args) -> absl::StatusOr<Value> {
          if (name == "get") {
            if (args.positional.empty() || args.positional.size() > 2 || !args.keyword.empty()) {
              return type_error("dict.get() takes a key and an optional default");
            }
            const Value& key = args.positional[0];
            const Value* hit = key.is_string() ? self.find(key.as_string()) : nullptr;
            if (hit != nullptr) return *hit;
            return args.positional.size() == 2 ? args.positional[1] : Value::none();
          }
          if (!args.positional.empty() || !args.keyword.empty()) {
            return type_error(str_cat("dict.", name, "() takes no arguments"));
          }
          std::vector<Value> out;
          for (const auto& [k, v] : self.entries()) {
            if (name == "keys") {
              out.push_back(Value::string(k));
            } else if (name == "values") {
              out.push_back(v);
            } else {
              out.push_back(Value::array({Value::string(k), v}, true));
            }
          }
          return make_array(std::move(out));
        });
      }
      if (name == "pop" || name == "update" || name == "setdefault" || name == "clear" || name == "popitem" ||
          name == "copy" || name == "fromkeys") {
        return Value::function("dict." + name, [name](const CallArgs&) -> absl::StatusOr<Value> {
          return type_error(str_cat("dict.", name, "() is not allowed in a chat template (immutable sandbox)"));
        });
      }
      const Value* hit = object.find(name);
      return hit != nullptr ? *hit : Value::undefined(name);
    }
    case Value::Kind::kNamespace: {
      const Value* hit = object.find(name);
      return hit != nullptr ? *hit : Value::undefined(name);
    }
    case Value::Kind::kString:
      if (is_str_method_name(name)) {
        Value self = object;
        return Value::function("str." + name, [this, self, name](const CallArgs& args) -> absl::StatusOr<Value> {
          auto st = charge(self.weight() / 16);
          if (!st.ok()) return st;
          auto result = call_string_method(self.as_string(), name, args);
          if (!result.ok()) return result.status();
          if (result->is_string()) return make_string(result->as_string());
          return result;
        });
      }
      return Value::undefined(name);
    case Value::Kind::kArray:
      if (name == "index" || name == "count") {
        Value self = object;
        return Value::function("list." + name, [this, self, name](const CallArgs& args) -> absl::StatusOr<Value> {
          if (args.positional.size() != 1 || !args.keyword.empty()) {
            return type_error(str_cat("list.", name, "() takes exactly one argument"));
          }
          auto st = charge(self.weight());
          if (!st.ok()) return st;
          int64_t count = 0;
          for (size_t i = 0; i < self.items().size(); ++i) {
            if (self.items()[i].equals(args.positional[0])) {
              if (name == "index") return Value::integer(static_cast<int64_t>(i));
              ++count;
            }
          }
          if (name == "index") return type_error("list.index(x): x not in list");
          return Value::integer(count);
        });
      }
      if (name == "append" || name == "extend" || name == "insert" || name == "pop" || name == "remove" ||
          name == "sort" || name == "reverse" || name == "clear" || name == "copy") {
        return Value::function("list." + name, [name](const CallArgs&) -> absl::StatusOr<Value> {
          return type_error(str_cat("list.", name, "() is not allowed in a chat template (immutable sandbox)"));
        });
      }
      return Value::undefined(name);
    case Value::Kind::kNone:
    case Value::Kind::kBool:
    case Value::Kind::kInt:
    case Value::Kind::kDouble:
    case Value::Kind::kFunction:
      break;
  }
  return Value::undefined(name);
}

absl::StatusOr<Value> Interpreter::get_item(const Value& object, const Value& key) {
  if (object.is_undefined()) {
    return type_error(str_cat(object.undefined_name().empty() ? "undefined value" : object.undefined_name(),
                              " is undefined (subscripting it)"));
  }
  if ((object.is_array() || object.is_string()) && (key.is_int() || key.is_bool())) {
    if (object.is_array()) {
      size_t index = 0;
      if (!normalize_index(key.as_int(), object.items().size(), &index)) return Value::undefined();
      return object.items()[index];
    }
    std::vector<char32_t> cps = utf8_decode(object.as_string());
    size_t index = 0;
    if (!normalize_index(key.as_int(), cps.size(), &index)) return Value::undefined();
    std::string one;
    utf8_append(one, cps[index]);
    return Value::string(std::move(one));
  }
  if (object.is_object() && key.is_string()) {
    if (const Value* hit = object.find(key.as_string()); hit != nullptr) return *hit;
  }
  if (key.is_string()) return get_attribute(object, key.as_string());
  return Value::undefined();
}

absl::StatusOr<Value> Interpreter::eval_slice(const Expr& e, Scope& scope) {
  auto target = eval(*e.children[0], scope);
  if (!target.ok()) return target;
  int64_t parts[3] = {0, 0, 1};
  bool given[3] = {false, false, false};
  for (int i = 0; i < 3; ++i) {
    if (!e.children[static_cast<size_t>(i) + 1]) continue;
    auto v = eval(*e.children[static_cast<size_t>(i) + 1], scope);
    if (!v.ok()) return v;
    if (v->is_none()) continue;
    if (!v->is_int() && !v->is_bool()) return type_error("slice indices must be integers or None");
    parts[i] = v->as_int();
    given[i] = true;
  }
  int64_t step = parts[2];
  if (step == 0) return type_error("slice step cannot be zero");
  if (target->is_undefined()) return undefined_error(*target);
  bool is_string = target->is_string();
  if (!is_string && !target->is_array()) {
    return type_error(str_cat("'", target->type_name(), "' object is not subscriptable"));
  }
  std::vector<char32_t> cps;
  if (is_string) cps = utf8_decode(target->as_string());
  int64_t n = static_cast<int64_t>(is_string ? cps.size() : target->items().size());
  auto clamp = [&](int64_t v, bool has, int64_t def) {
    if (!has) return def;
    if (v < 0) v += n;
    if (step > 0) return std::clamp<int64_t>(v, 0, n);
    return std::clamp<int64_t>(v, -1, n - 1);
  };
  int64_t start = clamp(parts[0], given[0], step > 0 ? 0 : n - 1);
  int64_t stop = clamp(parts[1], given[1], step > 0 ? n : -1);
  std::vector<size_t> picked;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) picked.push_back(static_cast<size_t>(i));
  if (is_string) {
    std::string out;
    for (size_t i : picked) utf8_append(out, cps[i]);
    return make_string(std::move(out));
  }
  std::vector<Value> out;
  for (size_t i : picked) out.push_back(target->items()[i]);
  return make_array(std::move(out), target->is_tuple());
}

absl::StatusOr<CallArgs> Interpreter::eval_args(const Expr& e, size_t first, Scope& scope) {
  CallArgs args;
  size_t num_keywords = e.keyword_names.size();
  size_t num_args = e.children.size() - first;
  for (size_t i = 0; i < num_args; ++i) {
    auto v = eval(*e.children[first + i], scope);
    if (!v.ok()) return v.status();
    if (i + num_keywords < num_args) {
      args.positional.push_back(*std::move(v));
    } else {
      args.keyword.emplace_back(e.keyword_names[i - (num_args - num_keywords)], *std::move(v));
    }
  }
  return args;
}

absl::StatusOr<Value> Interpreter::eval_binary(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") {
    auto x = display(a);
    if (!x.ok()) return x.status();
    auto y = display(b);
    if (!y.ok()) return y.status();
    return make_string(*x + *y);
  }
  if (a.is_undefined()) return undefined_error(a);
  if (b.is_undefined()) return undefined_error(b);
  auto unsupported = [&]() {
    return type_error(
        str_cat("unsupported operand type(s) for ", op, ": '", a.type_name(), "' and '", b.type_name(), "'"));
  };
  bool ints = (a.is_int() || a.is_bool()) && (b.is_int() || b.is_bool());
  bool numbers = a.is_number() && b.is_number();
  if (op == "+") {
    if (ints) {
      int64_t r = 0;
      if (__builtin_add_overflow(a.as_int(), b.as_int(), &r)) return type_error("integer overflow in '+'");
      return Value::integer(r);
    }
    if (numbers) return Value::number(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) {
      if (a.as_string().size() + b.as_string().size() > limits_.max_output_bytes) {
        return absl::ResourceExhaustedError("chat template string concatenation exceeds the size limit");
      }
      return make_string(a.as_string() + b.as_string());
    }
    if (a.is_array() && b.is_array() && a.is_tuple() == b.is_tuple()) {
      std::vector<Value> items = a.items();
      items.insert(items.end(), b.items().begin(), b.items().end());
      return make_array(std::move(items), a.is_tuple());
    }
    return unsupported();
  }
  if (op == "-") {
    if (ints) {
      int64_t r = 0;
      if (__builtin_sub_overflow(a.as_int(), b.as_int(), &r)) return type_error("integer overflow in '-'");
      return Value::integer(r);
    }
    if (numbers) return Value::number(a.as_double() - b.as_double());
    return unsupported();
  }
  if (op == "*") {
    if (ints) {
      int64_t r = 0;
      if (__builtin_mul_overflow(a.as_int(), b.as_int(), &r)) return type_error("integer overflow in '*'");
      return Value::integer(r);
    }
    if (numbers) return Value::number(a.as_double() * b.as_double());
    const Value* seq = (a.is_string() || a.is_array()) && (b.is_int() || b.is_bool())   ? &a
                       : (b.is_string() || b.is_array()) && (a.is_int() || a.is_bool()) ? &b
                                                                                        : nullptr;
    if (seq == nullptr) return unsupported();
    int64_t times = std::max<int64_t>(0, (seq == &a ? b : a).as_int());
    size_t unit = seq->is_string() ? seq->as_string().size() : seq->weight();
    if (unit > 0 && static_cast<uint64_t>(times) > limits_.max_output_bytes / unit) {
      return absl::ResourceExhaustedError("chat template repetition result exceeds the size limit");
    }
    if (seq->is_string()) {
      std::string out;
      for (int64_t i = 0; i < times; ++i) out += seq->as_string();
      return make_string(std::move(out));
    }
    std::vector<Value> items;
    for (int64_t i = 0; i < times; ++i) items.insert(items.end(), seq->items().begin(), seq->items().end());
    return make_array(std::move(items), seq->is_tuple());
  }
  if (!numbers) {
    if (op == "%" && a.is_string()) return type_error("unsupported construct: printf-style '%' string formatting");
    return unsupported();
  }
  if (op == "/") {
    if (b.as_double() == 0) return type_error("division by zero");
    return Value::number(a.as_double() / b.as_double());
  }
  if (op == "//" || op == "%") {
    if (ints) {
      if (b.as_int() == 0) return type_error("integer division or modulo by zero");
      if (a.as_int() == INT64_MIN && b.as_int() == -1) return type_error("integer overflow in '//'");
      return Value::integer(op == "//" ? floor_div(a.as_int(), b.as_int()) : floor_mod(a.as_int(), b.as_int()));
    }
    double x = a.as_double();
    double y = b.as_double();
    if (y == 0) return type_error("float division or modulo by zero");
    // CPython's float_divmod, so results match Python bit for bit.
    double m = std::fmod(x, y);
    double div = (x - m) / y;
    if (m != 0 && ((y < 0) != (m < 0))) {
      m += y;
      div -= 1.0;
    }
    if (op == "%") return Value::number(m);
    double floored = std::floor(div);
    if (div - floored > 0.5) floored += 1.0;
    return Value::number(floored);
  }
  if (op == "**") {
    if (ints && b.as_int() >= 0) {
      int64_t result = 1;
      int64_t base = a.as_int();
      for (int64_t e = b.as_int(); e > 0; --e) {
        if (__builtin_mul_overflow(result, base, &result)) return type_error("integer overflow in '**'");
        if (result == 0 || result == 1) break;
      }
      if (base == -1) result = (b.as_int() % 2 == 0) ? 1 : -1;
      return Value::integer(result);
    }
    if (a.as_double() == 0 && b.as_double() < 0) return type_error("zero to a negative power");
    return Value::number(std::pow(a.as_double(), b.as_double()));
  }
  return unsupported();
}

absl::StatusOr<Value> Interpreter::eval_compare(const Expr& e, Scope& scope) {
  auto left = eval(*e.children[0], scope);
  if (!left.ok()) return left;
  Value a = *std::move(left);
  for (size_t i = 0; i < e.ops.size(); ++i) {
    auto right = eval(*e.children[i + 1], scope);
    if (!right.ok()) return right;
    const Value& b = *right;
    const std::string& op = e.ops[i];
    absl::StatusOr<bool> result = false;
    if (op == "==" || op == "!=") {
      result = equals(a, b);
      if (result.ok() && op == "!=") result = !*result;
    } else if (op == "in" || op == "notin") {
      result = contains(b, a);
      if (result.ok() && op == "notin") result = !*result;
    } else if (op == "<") {
      result = less(a, b);
    } else if (op == ">") {
      result = less(b, a);
    } else if (op == "<=" || op == ">=") {
      result = op == "<=" ? less(b, a) : less(a, b);
      if (result.ok()) result = !*result;
    }
    if (!result.ok()) return result.status();
    if (!*result) return Value::boolean(false);
    a = b;
  }
  return Value::boolean(true);
}

absl::StatusOr<Value> Interpreter::eval(const Expr& e, Scope& scope) {
  auto st = charge(1);
  if (!st.ok()) return st;
  switch (e.kind) {
    case Expr::Kind::kLiteral:
      return e.value;
    case Expr::Kind::kName:
      return lookup(e.name, scope);
    case Expr::Kind::kList:
    case Expr::Kind::kTuple: {
      std::vector<Value> items;
      for (const auto& c : e.children) {
        auto v = eval(*c, scope);
        if (!v.ok()) return v;
        items.push_back(*std::move(v));
      }
      return make_array(std::move(items), e.kind == Expr::Kind::kTuple);
    }
    case Expr::Kind::kDict: {
      std::vector<Value::Entry> entries;
      for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
        auto k = eval(*e.children[i], scope);
        if (!k.ok()) return k;
        if (!k->is_string()) return type_error("only string keys are supported in chat template dict literals");
        auto v = eval(*e.children[i + 1], scope);
        if (!v.ok()) return v;
        entries.emplace_back(k->as_string(), *std::move(v));
      }
      Value d = Value::object(std::move(entries));
      if (d.weight() > limits_.max_value_weight || d.depth() > kMaxValueDepth / 2) {
        return absl::ResourceExhaustedError("chat template dict literal is too large or too deeply nested");
      }
      return d;
    }
    case Expr::Kind::kAttr: {
      auto obj = eval(*e.children[0], scope);
      if (!obj.ok()) return obj;
      return get_attribute(*obj, e.name);
    }
    case Expr::Kind::kItem: {
      auto obj = eval(*e.children[0], scope);
      if (!obj.ok()) return obj;
      auto key = eval(*e.children[1], scope);
      if (!key.ok()) return key;
      return get_item(*obj, *key);
    }
    case Expr::Kind::kSlice:
      return eval_slice(e, scope);
    case Expr::Kind::kCall: {
      auto callee = eval(*e.children[0], scope);
      if (!callee.ok()) return callee;
      auto args = eval_args(e, 1, scope);
      if (!args.ok()) return args.status();
      return call(*callee, *args);
    }
    case Expr::Kind::kFilter: {
      auto operand = eval(*e.children[0], scope);
      if (!operand.ok()) return operand;
      auto args = eval_args(e, 1, scope);
      if (!args.ok()) return args.status();
      return apply_filter(*this, e.name, *operand, *args);
    }
    case Expr::Kind::kTest: {
      auto operand = eval(*e.children[0], scope);
      if (!operand.ok()) return operand;
      auto args = eval_args(e, 1, scope);
      if (!args.ok()) return args.status();
      if (!args->keyword.empty()) return type_error(str_cat("test '", e.name, "' takes no keyword arguments"));
      auto result = apply_test(e.name, *operand, args->positional);
      if (!result.ok()) return result.status();
      return Value::boolean(*result != e.negated);
    }
    case Expr::Kind::kNeg:
    case Expr::Kind::kPos: {
      auto v = eval(*e.children[0], scope);
      if (!v.ok()) return v;
      if (!v->is_number()) {
        return type_error(
            str_cat("bad operand type for unary ", e.kind == Expr::Kind::kNeg ? "-" : "+", ": '", v->type_name(), "'"));
      }
      if (e.kind == Expr::Kind::kPos) return v->is_bool() ? Value::integer(v->as_int()) : *v;
      if (v->is_double()) return Value::number(-v->as_double());
      if (v->as_int() == INT64_MIN) return type_error("integer overflow in unary '-'");
      return Value::integer(-v->as_int());
    }
    case Expr::Kind::kNot: {
      auto v = eval(*e.children[0], scope);
      if (!v.ok()) return v;
      return Value::boolean(!v->truthy());
    }
    case Expr::Kind::kAnd:
    case Expr::Kind::kOr: {
      auto left = eval(*e.children[0], scope);
      if (!left.ok()) return left;
      bool short_circuit = e.kind == Expr::Kind::kAnd ? !left->truthy() : left->truthy();
      if (short_circuit) return left;
      return eval(*e.children[1], scope);
    }
    case Expr::Kind::kBinary: {
      auto a = eval(*e.children[0], scope);
      if (!a.ok()) return a;
      auto b = eval(*e.children[1], scope);
      if (!b.ok()) return b;
      return eval_binary(e.name, *a, *b);
    }
    case Expr::Kind::kCompare:
      return eval_compare(e, scope);
    case Expr::Kind::kCondition: {
      auto cond = eval(*e.children[0], scope);
      if (!cond.ok()) return cond;
      if (cond->truthy()) return eval(*e.children[1], scope);
      if (!e.children[2]) return Value::undefined();
      return eval(*e.children[2], scope);
    }
  }
  return Value::undefined();
}

}  // namespace bm::engine
