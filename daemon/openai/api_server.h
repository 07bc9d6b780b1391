#pragma once
// The OpenAI-compatible HTTP API (DESIGN §6) over the served models: routes, CORS, API keys, and the small
// endpoints (health, models, metrics, tokenize, detokenize); completions run as GenerationSessions.
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "daemon/openai/http_server.h"
#include "daemon/serving/served_model.h"

namespace bm::daemon::openai {

struct ApiServerOptions {
  HttpServerOptions http;
  std::string cors_allow_origin = "*";  // empty: no CORS headers
};

class ApiServer {
 public:
  ApiServer(ApiServerOptions options, serving::ModelRegistry& registry);
  ~ApiServer();
  absl::Status start();
  void stop();
  uint16_t port() const;
  std::string base_url() const;
  const HttpServerStats& stats() const;

 private:
  void route(const HttpRequest& request, std::shared_ptr<Exchange> exchange);

  ApiServerOptions options_;
  serving::ModelRegistry& registry_;
  std::unique_ptr<HttpServer> http_;
};

}  // namespace bm::daemon::openai
