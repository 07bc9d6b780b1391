#pragma once
// jinja2's builtin tests (`x is defined`, `x is string`, ...). An unknown test name is a load error.
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/template/value.h"

namespace bm::engine {

bool is_known_test(std::string_view name);
absl::StatusOr<bool> apply_test(std::string_view name, const Value& operand, const std::vector<Value>& args);

}  // namespace bm::engine
