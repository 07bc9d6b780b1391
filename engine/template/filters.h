#pragma once
// jinja2's builtin filters as the chat templates use them (plus transformers' tojson). A filter a template
// names that is not here is a load error, as in jinja2 (which checks filter names when compiling).
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/template/value.h"

namespace bm::engine {

class Interpreter;

bool is_known_filter(std::string_view name);
// Applies filter `name` to `operand`; `interpreter` gives access to tests (select/reject) and size limits.
absl::StatusOr<Value> apply_filter(Interpreter& interpreter, std::string_view name, const Value& operand,
                                   const CallArgs& args);

}  // namespace bm::engine
