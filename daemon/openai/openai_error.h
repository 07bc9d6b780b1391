#pragma once
// Every failure of the HTTP API answers in OpenAI's shape: {"error":{"message","type","param","code"}}.
#include <string>

#include "daemon/openai/http_types.h"

namespace bm::daemon::openai {

HttpResponse openai_error(int status, const std::string& message, const std::string& param = {});

// An error found while reading a request: the message names the parameter; status 400 unless said otherwise.
struct ApiError {
  int status = 400;
  std::string message;
  std::string param;
  HttpResponse response() const { return openai_error(status, message, param); }
};

}  // namespace bm::daemon::openai
