#pragma once
// Splits a Jinja template into text and tag tokens, applying whitespace control the way jinja2 does with
// trim_blocks=True and lstrip_blocks=True (the settings transformers uses), then tokenizes tag contents.
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace bm::engine {

struct Token {
  enum class Type { kText, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInt, kFloat, kOperator, kEof };
  Type type = Type::kEof;
  std::string text;  // literal text, name, decoded string literal, number spelling or operator
  int line = 1;
};

// Fails with "chat template line N: ..." on an unterminated tag, string or an unknown character.
absl::StatusOr<std::vector<Token>> tokenize_template(std::string_view source);

}  // namespace bm::engine
