#pragma once
// The JSON of API requests. Objects keep the order the client wrote their keys in: chat templates serialise tools,
// schemas and tool-call arguments with tojson, and transformers' apply_chat_template (so vLLM, and the models'
// training data) keeps the client's order, so a sorted map would change every tool-calling prompt.
#include <cstddef>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "absl/status/statusor.h"
#include "engine/template/value.h"

namespace bm::daemon::openai {

using RequestJson = nlohmann::ordered_json;

// Deeper documents are refused while parsing, before anything walks them recursively.
inline constexpr size_t kMaxRequestJsonDepth = 64;  // request_body.h kMaxJsonDepth: one bound for every request

// Parses JSON text (a request body, a tool call's arguments). nlohmann's own parser looks for a duplicate of
// every key of an ordered object with a linear scan, quadratic in the object's size (minutes for one 32 MiB
// object); this parser indexes the keys of large open objects, so it runs in linear time. A repeated key keeps
// its first position and takes the last value, as Python's json.loads does. Error messages complete a sentence
// about the text: "not valid JSON (at byte 17)" (InvalidArgument), "nested deeper than 512 levels"
// (ResourceExhausted).
absl::StatusOr<RequestJson> parse_request_json(std::string_view text, size_t max_depth = kMaxRequestJsonDepth);

// The chat template's value for a JSON tree, built directly from it with the same key order. Fails on an
// integer beyond int64 (Python would keep it; the template engine has 64-bit integers) and on nesting deeper
// than the template engine walks.
absl::StatusOr<engine::Value> to_template_value(const RequestJson& json);

}  // namespace bm::daemon::openai
