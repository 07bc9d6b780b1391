#pragma once
// Parses jinja2 template syntax into the tree in ast.h. Anything outside the supported subset (include,
// extends, call blocks, filter blocks, *args, unknown filters or tests, ...) is a load error naming the line
// and the construct, so an unsupported template never renders a silently wrong prompt.
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/template/ast.h"

namespace bm::engine {

// Nesting of blocks and expressions deeper than this is rejected (bounds the parser's and interpreter's
// recursion on hostile input).
inline constexpr int kMaxTemplateNesting = 128;

absl::StatusOr<Body> parse_template(std::string_view source);

}  // namespace bm::engine
