#include "daemon/openai/openai_error.h"

#include <string_view>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"

namespace bm::daemon::openai {
namespace {

std::string error_type(int status) {
  switch (status) {
    case 400:
    case 404:
    case 405:
    case 413:
    case 422:
      return status == 404 ? "NotFoundError" : "BadRequestError";
    case 401:
      return "AuthenticationError";
    case 403:
      return "PermissionDeniedError";
    case 429:
      return "RateLimitError";
    case 503:
      return "ServiceUnavailableError";
    default:
      return "InternalServerError";
  }
}

bool is_path_char(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '.' || c == '_' || c == '-' ||
         c == '+' || c == '@' || c == '~' || c == ',';
}

}  // namespace

std::string without_paths(const std::string& message) {
  std::string out;
  out.reserve(message.size());
  size_t i = 0;
  while (i < message.size()) {
    const bool starts_token = i == 0 || !is_path_char(message[i - 1]);
    if (message[i] == '/' && starts_token) {
      size_t end = i;
      while (end < message.size() && is_path_char(message[end])) ++end;
      std::string_view path(message.data() + i, end - i);
      // A path has at least two components ("/a/b"); a lone "/x" is more likely prose or a route.
      if (path.find('/', 1) != std::string_view::npos) {
        while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
        out += path.substr(path.rfind('/') + 1);
        i = end;
        continue;
      }
    }
    out += message[i++];
  }
  return out;
}

HttpResponse openai_error(int status, const std::string& message, const std::string& param) {
  nlohmann::json error = {{"message", message},
                          {"type", error_type(status)},
                          {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
                          {"code", status}};
  HttpResponse response;
  response.status = status;
  response.body = nlohmann::json{{"error", error}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

}  // namespace bm::daemon::openai
