#pragma once
// JSON Schema (as the OpenAI SDK and pydantic emit it) → a grammar whose sentences are JSON texts that validate.
// Each keyword is used, ignored as an annotation, or refused with a sentence naming it and where it is; the
// table is json_schema_keywords() and docs/structured-output.md. Also the grammar of any JSON object
// (response_format json_object).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/grammar/grammar.h"

namespace bm::engine::grammar {

struct JsonGrammarOptions {
  // A regular expression for the whitespace allowed between JSON tokens (vLLM's guided_whitespace_pattern).
  // Unset: nothing, one space, or a newline and up to 20 spaces or tabs of indentation (llama.cpp's rule), so a
  // model cannot pad forever.
  std::optional<std::string> whitespace_pattern;
  int32_t max_rules = 20000;
};

enum class KeywordUse { kUsed, kIgnored, kRefused };
struct KeywordInfo {
  std::string_view keyword;
  KeywordUse use;
};
// Every keyword the converter knows; keywords not listed are ignored, as JSON Schema says of unknown keywords.
const std::vector<KeywordInfo>& json_schema_keywords();

// Adds a schema's rules to `g` (under names not used yet) and returns the expression of its values; its $refs
// resolve within this schema. Several schemas can share one grammar (tool calls).
absl::StatusOr<int32_t> add_json_schema(Grammar& g, std::string_view schema_text, const JsonGrammarOptions& options);
absl::StatusOr<Grammar> json_schema_to_grammar(std::string_view schema_text, const JsonGrammarOptions& options = {});
// Any JSON object: response_format {"type": "json_object"}.
absl::StatusOr<Grammar> json_object_grammar(const JsonGrammarOptions& options = {});

}  // namespace bm::engine::grammar
