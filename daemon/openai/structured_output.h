#pragma once
// Structured output at the API edge: response_format (json_object, json_schema) and vLLM's guided_json,
// guided_regex, guided_choice, guided_grammar (llama.cpp GBNF) and guided_whitespace_pattern, plus the tool-call
// constraint of tool_choice "required" / a named function. Reads and checks the fields, then compiles the grammar
// against the model's vocabulary (cached per tokenizer); every problem is a 400 naming the field, before anything
// reaches the engine. docs/structured-output.md.
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include <nlohmann/json_fwd.hpp>

#include "daemon/openai/openai_error.h"
#include "engine/grammar/compiled_grammar.h"
#include "engine/grammar/grammar_request.h"

namespace bm::engine {
class Tokenizer;
}

namespace bm::daemon::openai {

struct StructuredOutput {
  engine::grammar::GrammarRequest request;
  std::string param;  // the field it came from, named in errors
};

// What the request constrains its output to; nothing when it leaves the output free.
std::variant<std::optional<StructuredOutput>, ApiError> parse_structured_output(const nlohmann::json& body);

// The body of one hermes tool call constrained to `tools` (the request's 'tools' list); with `named`, only that
// tool, whose name the server already wrote; otherwise, with `parallel` (the request's parallel_tool_calls, true
// unless it says false, as OpenAI's default), one or more calls.
std::variant<engine::grammar::GrammarRequest, ApiError> tool_call_grammar(const nlohmann::json& tools,
                                                                          const std::string& named, bool parallel);

// The compiled grammar for `tokenizer`'s vocabulary; a schema, regex or grammar that cannot be used is a 400
// naming `param`.
std::variant<std::shared_ptr<const engine::grammar::CompiledGrammar>, ApiError> compile_structured_output(
    const std::shared_ptr<const engine::Tokenizer>& tokenizer, const engine::grammar::GrammarRequest& request,
    const std::string& param);

}  // namespace bm::daemon::openai
