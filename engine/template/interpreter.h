#pragma once
// Walks a parsed template and produces its text with jinja2 semantics (scoping of for-loop bodies, `loop.*`,
// namespaces, macros, Undefined). Every render is bounded (work steps, call depth, output and value size), so
// a hostile template fails with a clear error instead of hanging or exhausting memory.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/template/ast.h"
#include "engine/template/value.h"

namespace bm::engine {

struct RenderLimits {
  size_t max_output_bytes = size_t{16} << 20;  // also caps any single string value
  size_t max_value_weight = size_t{64} << 20;  // nodes + string bytes of one list/dict
  int64_t max_steps = 5'000'000;               // statements, expressions, iterations, bytes walked (~1 s)
  int max_call_depth = 64;                     // nested macro / filter-callback calls
  int64_t max_range = 100'000;                 // jinja2's sandbox MAX_RANGE
};

class Interpreter {
 public:
  explicit Interpreter(RenderLimits limits) : limits_(limits) {}
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Renders `body` with `globals` as the outermost variables. Call once per Interpreter.
  absl::StatusOr<std::string> render(const Body& body, std::vector<std::pair<std::string, Value>> globals);

  // Shared with filters and tests.
  const RenderLimits& limits() const { return limits_; }
  absl::Status charge(size_t work);
  absl::StatusOr<Value> make_string(std::string s);
  absl::StatusOr<Value> make_array(std::vector<Value> items, bool is_tuple = false);
  absl::StatusOr<Value> get_attribute(const Value& object, const std::string& name);
  absl::StatusOr<Value> get_item(const Value& object, const Value& key);
  absl::StatusOr<std::vector<Value>> iterate(const Value& v);
  absl::StatusOr<bool> contains(const Value& container, const Value& item);
  absl::StatusOr<bool> equals(const Value& a, const Value& b);
  // Python ordering (<): numbers, strings, lists/tuples; anything else is a TypeError.
  absl::StatusOr<bool> less(const Value& a, const Value& b);
  absl::StatusOr<std::string> display(const Value& v);
  // Calls a function value, counting the call depth.
  absl::StatusOr<Value> call(const Value& callee, const CallArgs& args);
  Value make_namespace(std::vector<Value::Entry> entries);

 private:
  struct Scope;
  enum class Flow { kNormal, kBreak, kContinue };

  absl::StatusOr<Flow> exec_body(const Body& body, const std::shared_ptr<Scope>& scope, std::string& out);
  absl::StatusOr<Flow> exec(const Stmt& stmt, const std::shared_ptr<Scope>& scope, std::string& out);
  absl::StatusOr<Flow> exec_for(const Stmt& stmt, const std::shared_ptr<Scope>& scope, std::string& out);
  absl::Status assign(const Target& target, Value value, Scope& scope);
  absl::Status define_macro(const Stmt& stmt, const std::shared_ptr<Scope>& scope);
  absl::StatusOr<Value> call_macro(const Stmt& stmt, const std::weak_ptr<Scope>& defining_scope, const CallArgs& args);
  absl::Status append_output(std::string& out, std::string_view text);

  absl::StatusOr<Value> eval(const Expr& e, Scope& scope);
  absl::StatusOr<Value> eval_binary(const std::string& op, const Value& a, const Value& b);
  absl::StatusOr<Value> eval_compare(const Expr& e, Scope& scope);
  absl::StatusOr<Value> eval_slice(const Expr& e, Scope& scope);
  absl::StatusOr<CallArgs> eval_args(const Expr& e, size_t first, Scope& scope);
  Value lookup(const std::string& name, const Scope& scope) const;
  void install_builtins(std::vector<std::pair<std::string, Value>>& globals);

  absl::Status with_line(absl::Status st, int line) const;

  RenderLimits limits_;
  int64_t steps_ = 0;
  int call_depth_ = 0;
  bool raised_ = false;            // the error came from raise_exception(): pass its message through unchanged
  std::vector<Value> namespaces_;  // cleared after rendering to break reference cycles through them
};

}  // namespace bm::engine
