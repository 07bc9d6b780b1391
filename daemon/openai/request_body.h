#pragma once
// The JSON body of an API request, parsed under a nesting bound: nothing downstream (copies, dump(), the
// template's value model) recurses on client data deeper than the bound, because deeper bodies never parse.
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

#include "daemon/openai/openai_error.h"
#include "daemon/openai/request_json.h"

namespace bm::daemon::openai {

// Deep enough for any real request (a JSON schema inside a tool inside a message is ~10 levels), shallow
// enough that recursive walks of the value stay far from the stack's end.
inline constexpr int kMaxJsonDepth = 64;

enum class JsonParse { kOk, kInvalid, kTooDeep };
// Parses any JSON text under the bound (client bodies, tool-call arguments): `out` is set only with kOk.
JsonParse parse_json_bounded(std::string_view text, int max_depth, RequestJson& out);

// Parses `body` as one JSON object; a syntax error, a non-object, or nesting deeper than max_depth is a 400.
std::variant<RequestJson, ApiError> parse_request_body(std::string_view body, int max_depth = kMaxJsonDepth);

}  // namespace bm::daemon::openai
