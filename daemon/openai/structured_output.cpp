#include "daemon/openai/structured_output.h"

#include <mutex>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "engine/grammar/grammar_cache.h"
#include "engine/tokenizer/tokenizer.h"

namespace bm::daemon::openai {
namespace {

using engine::grammar::GrammarKind;
using engine::grammar::GrammarRequest;
using nlohmann::json;

// Which field a request's constraint came from, for messages and conflicts.
struct Source {
  const char* field;
  GrammarKind kind;
};

const Source kGuidedFields[] = {
    {"guided_json", GrammarKind::kJsonSchema},
    {"guided_regex", GrammarKind::kRegex},
    {"guided_choice", GrammarKind::kChoice},
    {"guided_grammar", GrammarKind::kGbnf},
};

bool present(const json& body, const char* key) {
  auto it = body.find(key);
  return it != body.end() && !it->is_null();
}

// The schema of a json_schema / guided_json field: an object (or boolean) schema, or its JSON text.
std::variant<std::string, ApiError> schema_text(const json& value, const std::string& param) {
  if (value.is_object() || value.is_boolean()) return value.dump();
  if (value.is_string()) {
    json parsed = json::parse(value.get<std::string>(), nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded() || !(parsed.is_object() || parsed.is_boolean()))
      return ApiError{400, "'" + param + "' must be a JSON schema (an object, or its JSON text)", param};
    return value.get<std::string>();
  }
  return ApiError{400, "'" + param + "' must be a JSON schema (an object, or its JSON text)", param};
}

std::variant<std::optional<GrammarRequest>, ApiError> read_response_format(const json& body) {
  auto it = body.find("response_format");
  if (it == body.end() || it->is_null()) return std::optional<GrammarRequest>();
  const json& rf = *it;
  if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string())
    return ApiError{400, "'response_format' must be an object with a 'type'", "response_format"};
  const std::string type = rf["type"].get<std::string>();
  if (type == "text") return std::optional<GrammarRequest>();
  GrammarRequest r;
  if (type == "json_object") {
    r.kind = GrammarKind::kJsonObject;
    return std::optional<GrammarRequest>(r);
  }
  if (type != "json_schema")
    return ApiError{400,
                    "'response_format' type '" + type + "' is not supported (use text, json_object or json_schema)",
                    "response_format"};
  if (!rf.contains("json_schema") || !rf["json_schema"].is_object())
    return ApiError{400, "'response_format' of type json_schema needs a 'json_schema' object", "response_format"};
  const json& js = rf["json_schema"];
  if (!js.contains("schema") || js["schema"].is_null()) {
    // OpenAI's schema field is optional: without one, any JSON object.
    r.kind = GrammarKind::kJsonObject;
    return std::optional<GrammarRequest>(r);
  }
  std::variant<std::string, ApiError> text = schema_text(js["schema"], "response_format");
  if (auto* err = std::get_if<ApiError>(&text)) return *err;
  r.kind = GrammarKind::kJsonSchema;
  r.text = std::get<std::string>(text);
  return std::optional<GrammarRequest>(r);
}

// One vocabulary trie and grammar cache per tokenizer (a served model), kept while the tokenizer lives.
std::shared_ptr<engine::grammar::GrammarCache> cache_for(const std::shared_ptr<const engine::Tokenizer>& tokenizer) {
  static std::mutex mutex;
  static std::vector<std::pair<std::weak_ptr<const engine::Tokenizer>, std::shared_ptr<engine::grammar::GrammarCache>>>
      caches;
  std::lock_guard<std::mutex> lock(mutex);
  std::erase_if(caches, [](const auto& entry) { return entry.first.expired(); });
  for (const auto& [owner, cache] : caches)
    if (!owner.owner_before(tokenizer) && !tokenizer.owner_before(owner)) return cache;
  auto cache = std::make_shared<engine::grammar::GrammarCache>(
      engine::grammar::TokenVocabulary::from_tokenizer(*tokenizer, tokenizer->vocab_size()));
  caches.emplace_back(tokenizer, cache);
  return cache;
}

}  // namespace

std::variant<std::optional<StructuredOutput>, ApiError> parse_structured_output(const json& body) {
  std::variant<std::optional<GrammarRequest>, ApiError> from_format = read_response_format(body);
  if (auto* err = std::get_if<ApiError>(&from_format)) return *err;
  std::optional<GrammarRequest> request = std::get<std::optional<GrammarRequest>>(from_format);
  const char* source = request ? "response_format" : nullptr;
  for (const Source& s : kGuidedFields) {
    if (!present(body, s.field)) continue;
    if (source)
      return ApiError{
          400, absl::StrCat("'", s.field, "' and '", source, "' both constrain the output; send only one of them"),
          s.field};
    source = s.field;
    const json& value = body[s.field];
    GrammarRequest r;
    r.kind = s.kind;
    switch (s.kind) {
      case GrammarKind::kJsonSchema: {
        std::variant<std::string, ApiError> text = schema_text(value, s.field);
        if (auto* err = std::get_if<ApiError>(&text)) return *err;
        r.text = std::get<std::string>(text);
        break;
      }
      case GrammarKind::kRegex:
      case GrammarKind::kGbnf:
        if (!value.is_string() || value.get<std::string>().empty())
          return ApiError{400, absl::StrCat("'", s.field, "' must be a non-empty string"), s.field};
        r.text = value.get<std::string>();
        break;
      case GrammarKind::kChoice:
        if (!value.is_array() || value.empty())
          return ApiError{400, "'guided_choice' must be a non-empty list of strings", s.field};
        for (const json& c : value) {
          if (!c.is_string() || c.get<std::string>().empty())
            return ApiError{400, "'guided_choice' must be a non-empty list of non-empty strings", s.field};
          r.choices.push_back(c.get<std::string>());
        }
        break;
      case GrammarKind::kJsonObject:
      case GrammarKind::kToolCall:
        break;
    }
    request = std::move(r);
  }
  if (present(body, "guided_whitespace_pattern")) {
    const json& ws = body["guided_whitespace_pattern"];
    if (!ws.is_string())
      return ApiError{400, "'guided_whitespace_pattern' must be a string (a regular expression)",
                      "guided_whitespace_pattern"};
    if (!request || (request->kind != GrammarKind::kJsonSchema && request->kind != GrammarKind::kJsonObject))
      return ApiError{400,
                      "'guided_whitespace_pattern' applies only to JSON output (response_format json_object / "
                      "json_schema, or guided_json)",
                      "guided_whitespace_pattern"};
    request->whitespace_pattern = ws.get<std::string>();
  }
  if (!request) return std::optional<StructuredOutput>();
  return std::optional<StructuredOutput>(StructuredOutput{*std::move(request), source});
}

std::variant<GrammarRequest, ApiError> tool_call_grammar(const json& tools, const std::string& named, bool parallel) {
  GrammarRequest r;
  r.kind = GrammarKind::kToolCall;
  r.tool_name_given = !named.empty();
  r.parallel_calls = named.empty() && parallel;
  for (const json& t : tools) {
    const json& f = t["function"];
    const std::string name = f["name"].get<std::string>();
    if (!named.empty() && name != named) continue;
    std::string parameters = R"({"type": "object", "properties": {}})";  // no parameters: no arguments
    if (f.contains("parameters") && !f["parameters"].is_null()) {
      if (!f["parameters"].is_object())
        return ApiError{400, "tool '" + name + "' has 'parameters' that are not a JSON schema object", "tools"};
      parameters = f["parameters"].dump();
    }
    r.tools.push_back({name, parameters});
    if (!named.empty()) break;
  }
  return r;
}

std::variant<std::shared_ptr<const engine::grammar::CompiledGrammar>, ApiError> compile_structured_output(
    const std::shared_ptr<const engine::Tokenizer>& tokenizer, const GrammarRequest& request,
    const std::string& param) {
  absl::StatusOr<std::shared_ptr<const engine::grammar::CompiledGrammar>> compiled = cache_for(tokenizer)->get(request);
  if (!compiled.ok()) return ApiError{400, absl::StrCat("'", param, "': ", compiled.status().message()), param};
  return *compiled;
}

}  // namespace bm::daemon::openai
