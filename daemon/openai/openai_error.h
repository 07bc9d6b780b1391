#pragma once
// Every failure of the HTTP API answers in OpenAI's shape: {"error":{"message","type","param","code"}}.
#include <string>

#include "daemon/openai/http_types.h"

namespace bm::daemon::openai {

HttpResponse openai_error(int status, const std::string& message, const std::string& param = {});

// The message with every absolute file path cut to its last component: errors from loading (a model folder, a
// config file) reach HTTP clients without telling them the layout of the server's disks; the log keeps paths.
std::string without_paths(const std::string& message);

// An error found while reading a request: the message names the parameter; status 400 unless said otherwise.
struct ApiError {
  int status = 400;
  std::string message;
  std::string param;
  int retry_after_seconds = 0;  // > 0: sent as Retry-After (503 when the model's queue is full)
  HttpResponse response() const {
    HttpResponse r = openai_error(status, message, param);
    if (retry_after_seconds > 0) r.headers.push_back({"Retry-After", std::to_string(retry_after_seconds)});
    return r;
  }
};

}  // namespace bm::daemon::openai
