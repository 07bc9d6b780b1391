#include "daemon/openai/request_body.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace bm::daemon::openai {

JsonParse parse_json_bounded(std::string_view text, int max_depth, RequestJson& out) {
  // parse_request_json stops at the first container past the bound, before the rest of the text is read.
  absl::StatusOr<RequestJson> parsed = parse_request_json(text, static_cast<size_t>(max_depth));
  if (parsed.ok()) {
    out = *std::move(parsed);
    return JsonParse::kOk;
  }
  return absl::IsResourceExhausted(parsed.status()) ? JsonParse::kTooDeep : JsonParse::kInvalid;
}

std::variant<RequestJson, ApiError> parse_request_body(std::string_view body, int max_depth) {
  absl::StatusOr<RequestJson> parsed = parse_request_json(body, static_cast<size_t>(max_depth));
  if (!parsed.ok()) {
    if (absl::IsResourceExhausted(parsed.status()))
      return ApiError{
          400, absl::StrCat("the request body nests JSON deeper than ", max_depth, " levels; send a less nested body")};
    return ApiError{400, absl::StrCat("the request body is ", parsed.status().message())};
  }
  if (!parsed->is_object()) return ApiError{400, "the request body must be a JSON object"};
  return *std::move(parsed);
}

}  // namespace bm::daemon::openai
