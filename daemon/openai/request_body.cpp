#include "daemon/openai/request_body.h"

#include "absl/strings/str_cat.h"

namespace bm::daemon::openai {
namespace {

using json = nlohmann::json;

// nlohmann's parser is iterative, but the tree it builds is not walked iteratively by everything that reads it
// later. The callback sees the depth of each event and stops the parse the moment a container opens too deep,
// before the rest of the body is read.
struct TooDeep {};

}  // namespace

JsonParse parse_json_bounded(std::string_view text, int max_depth, json& out) {
  json::parser_callback_t bound = [max_depth](int depth, json::parse_event_t event, json&) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) && depth >= max_depth)
      throw TooDeep{};
    return true;
  };
  try {
    json parsed = json::parse(text.begin(), text.end(), bound, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) return JsonParse::kInvalid;
    out = std::move(parsed);
    return JsonParse::kOk;
  } catch (const TooDeep&) {
    return JsonParse::kTooDeep;
  }
}

std::variant<json, ApiError> parse_request_body(std::string_view body, int max_depth) {
  json parsed;
  switch (parse_json_bounded(body, max_depth, parsed)) {
    case JsonParse::kOk:
      break;
    case JsonParse::kInvalid:
      return ApiError{400, "the request body is not valid JSON"};
    case JsonParse::kTooDeep:
      return ApiError{
          400, absl::StrCat("the request body nests JSON deeper than ", max_depth, " levels; send a less nested body")};
  }
  if (!parsed.is_object()) return ApiError{400, "the request body must be a JSON object"};
  return parsed;
}

}  // namespace bm::daemon::openai
