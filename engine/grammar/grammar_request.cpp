#include "engine/grammar/grammar_request.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "engine/grammar/gbnf_parser.h"
#include "engine/grammar/json_schema_converter.h"
#include "engine/grammar/regex_converter.h"

namespace bm::engine::grammar {

std::string GrammarRequest::cache_key() const {
  // Lengths before each part keep the key unambiguous whatever the parts contain.
  std::string key = absl::StrCat(
      static_cast<int>(kind), ":", text.size(), ":", text, ":",
      whitespace_pattern ? absl::StrCat(whitespace_pattern->size(), ":", *whitespace_pattern) : std::string("-"));
  for (const std::string& c : choices) absl::StrAppend(&key, ":", c.size(), ":", c);
  for (const ToolSchema& t : tools)
    absl::StrAppend(&key, ":", t.name.size(), ":", t.name, ":", t.parameters.size(), ":", t.parameters);
  absl::StrAppend(&key, tool_name_given ? ":named" : "", parallel_calls ? ":parallel" : "",
                  after_reasoning ? ":reasoning" : "");
  return key;
}

namespace {

// Any text that does not contain "</think>" (checked against Python's re on 200k random strings over the
// characters of the tag): runs of text without '<', and after each '<' a proper prefix of "/think" that is either
// followed by another '<' or broken off by a character that does not continue the tag.
constexpr const char* kReasoningText =
    R"([^<]*(<((/(t(h(i(nk?)?)?)?)?)?<)*([^/<]|/[^t<]|/t[^h<]|/th[^i<]|/thi[^n<]|/thin[^k<]|/think[^><])[^<]*)*)"
    R"((<((/(t(h(i(nk?)?)?)?)?)?<)*(/(t(h(i(nk?)?)?)?)?)?)?)";

absl::StatusOr<Grammar> build_constraint(const GrammarRequest& request);

}  // namespace

absl::StatusOr<Grammar> build_grammar(const GrammarRequest& request) {
  absl::StatusOr<Grammar> g = build_constraint(request);
  if (!g.ok() || !request.after_reasoning) return g;
  const int32_t answer = g->root();
  const int32_t root = g->add_rule(g->unique_name("reasoning-then-answer"));
  absl::StatusOr<int32_t> reasoning = regex_to_expr(*g, kReasoningText);
  absl::StatusOr<int32_t> gap = regex_to_expr(*g, "[ \\t\\n]{0,8}");
  if (!reasoning.ok()) return reasoning.status();
  if (!gap.ok()) return gap.status();
  g->set_body(root, g->sequence({*reasoning, g->literal("</think>"), *gap, g->rule_ref(answer)}));
  g->set_root(root);
  return g;
}

namespace {

absl::StatusOr<Grammar> build_constraint(const GrammarRequest& request) {
  if (request.text.size() > kMaxGrammarTextBytes)
    return absl::InvalidArgumentError(absl::StrCat("the ", request.kind == GrammarKind::kGbnf ? "grammar" : "schema",
                                                   " has ", request.text.size(), " bytes; at most ",
                                                   kMaxGrammarTextBytes, " are accepted"));
  JsonGrammarOptions json_options;
  json_options.whitespace_pattern = request.whitespace_pattern;
  switch (request.kind) {
    case GrammarKind::kJsonSchema:
      return json_schema_to_grammar(request.text, json_options);
    case GrammarKind::kJsonObject:
      return json_object_grammar(json_options);
    case GrammarKind::kGbnf:
      return parse_gbnf(request.text);
    case GrammarKind::kRegex: {
      Grammar g;
      const int32_t root = g.add_rule("root");
      absl::StatusOr<int32_t> e = regex_to_expr(g, request.text);
      if (!e.ok()) return e.status();
      g.set_body(root, *e);
      g.set_root(root);
      return g;
    }
    case GrammarKind::kToolCall: {
      if (request.tools.empty()) return absl::InvalidArgumentError("there are no tools to call");
      if (request.tool_name_given && request.tools.size() != 1)
        return absl::InvalidArgumentError("a named tool call constrains exactly one tool");
      if (request.tool_name_given && request.parallel_calls)
        return absl::InvalidArgumentError("a named tool call is one call");
      size_t bytes = 0;
      for (const ToolSchema& t : request.tools) bytes += t.parameters.size() + t.name.size();
      if (bytes > kMaxGrammarTextBytes)
        return absl::InvalidArgumentError(absl::StrCat("the tools' parameter schemas hold ", bytes, " bytes; at most ",
                                                       kMaxGrammarTextBytes, " are accepted"));
      Grammar g;
      const int32_t root = g.add_rule("root");
      std::vector<int32_t> calls;
      for (const ToolSchema& t : request.tools) {
        absl::StatusOr<int32_t> arguments = add_json_schema(g, t.parameters, json_options);
        if (!arguments.ok())
          return absl::Status(arguments.status().code(),
                              absl::StrCat("tool '", t.name, "' parameters: ", arguments.status().message()));
        // The spacing of Qwen's hermes template, so the text reads as the model would write it.
        if (request.tool_name_given)
          calls.push_back(g.sequence({*arguments, g.literal("}")}));
        else
          calls.push_back(
              g.sequence({g.literal(absl::StrCat("{\"name\": ", nlohmann::json(t.name).dump(), ", \"arguments\": ")),
                          *arguments, g.literal("}")}));
      }
      const int32_t call = g.add_rule(g.unique_name("tool-call"));
      g.set_body(call, g.choice(std::move(calls)));
      std::vector<int32_t> body = {g.rule_ref(call), g.literal("\n</tool_call>")};
      if (request.parallel_calls)
        body.push_back(
            g.star(g.sequence({g.literal("\n<tool_call>\n"), g.rule_ref(call), g.literal("\n</tool_call>")})));
      g.set_body(root, g.sequence(std::move(body)));
      g.set_root(root);
      return g;
    }
    case GrammarKind::kChoice: {
      if (request.choices.empty()) return absl::InvalidArgumentError("the list of choices is empty");
      if (request.choices.size() > kMaxChoices)
        return absl::InvalidArgumentError(
            absl::StrCat("there are ", request.choices.size(), " choices; at most ", kMaxChoices, " are accepted"));
      size_t bytes = 0;
      for (const std::string& c : request.choices) bytes += c.size();
      if (bytes > kMaxGrammarTextBytes)
        return absl::InvalidArgumentError(
            absl::StrCat("the choices hold ", bytes, " bytes; at most ", kMaxGrammarTextBytes, " are accepted"));
      Grammar g;
      const int32_t root = g.add_rule("root");
      std::vector<int32_t> alternatives;
      for (const std::string& c : request.choices) alternatives.push_back(g.literal(c));
      g.set_body(root, g.choice(std::move(alternatives)));
      g.set_root(root);
      return g;
    }
  }
  return absl::InvalidArgumentError("unknown grammar kind");
}

}  // namespace

}  // namespace bm::engine::grammar
