#pragma once
// What a request constrains its output to, in the forms vLLM's OpenAI server accepts (response_format and the
// guided_* fields), and how each becomes a Grammar. The daemon fills it from the API; the engine compiles it.
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/grammar/grammar.h"

namespace bm::engine::grammar {

// kToolCall: the body of one hermes tool call after "<tool_call>\n" (or, with tool_name_given, after the prefix
// `{"name": "<name>", "arguments": ` the server already wrote): `{"name": <one of the tools>, "arguments":
// <that tool's parameters>}` then "\n</tool_call>"; with parallel_calls, any number of further calls, each
// "\n<tool_call>\n{...}\n</tool_call>", as Qwen's hermes template writes several.
enum class GrammarKind { kJsonSchema, kJsonObject, kRegex, kChoice, kGbnf, kToolCall };

struct ToolSchema {
  std::string name;
  std::string parameters;  // JSON Schema text
};

struct GrammarRequest {
  GrammarKind kind = GrammarKind::kJsonObject;
  std::string text;                               // the schema (JSON text), the regex or the GBNF grammar
  std::vector<std::string> choices;               // kChoice
  std::optional<std::string> whitespace_pattern;  // JSON kinds only
  std::vector<ToolSchema> tools;                  // kToolCall
  bool tool_name_given = false;                   // kToolCall with one tool: its name is already written
  bool parallel_calls = false;                    // kToolCall without a name: more calls may follow the first
  // A reasoning model whose prompt opened "<think>": free text without "</think>", then "</think>", a little
  // whitespace, and only then the constrained output.
  bool after_reasoning = false;

  // Equal keys compile to the same grammar.
  std::string cache_key() const;
};

// Refuses what is too large (the text over kMaxGrammarTextBytes, or choices past their limits).
absl::StatusOr<Grammar> build_grammar(const GrammarRequest& request);

constexpr size_t kMaxGrammarTextBytes = 256 * 1024;
constexpr size_t kMaxChoices = 10000;

}  // namespace bm::engine::grammar
