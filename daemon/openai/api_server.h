#pragma once
// The OpenAI-compatible HTTP API (DESIGN §6) over the served models: one route table, CORS, the Host check,
// API keys, admission into each model's bounded queue, and the small endpoints (health, models, metrics,
// tokenize, detokenize); completions run as GenerationSessions. Routes that parse, render or tokenize run on a
// small worker pool, never on the HTTP I/O threads.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "daemon/openai/http_server.h"
#include "daemon/serving/served_model.h"

namespace bm::daemon::openai {

class WorkPool;

struct ApiServerOptions {
  HttpServerOptions http;
  // Origins that browsers may call the API from (CORS). Empty: no CORS headers, so a web page cannot read
  // responses; "*": any origin (as Ollama's OLLAMA_ORIGINS).
  std::vector<std::string> allowed_origins;
  // Per served model, sequences that may wait for a place beyond the --max-num-seqs running ones; past it a
  // request gets 503 with Retry-After. 0: four times max_num_seqs.
  int64_t max_waiting_seqs = 0;
  int num_workers = 2;  // threads that prepare requests (parse, template, tokenize)
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

  struct Route;

 private:
  static const std::vector<Route>& routes();
  void route(HttpRequest request, std::shared_ptr<Exchange> exchange);
  void handle_options(const HttpRequest& request, Exchange& exchange);
  void handle_health(const HttpRequest& request, Exchange& exchange);
  void handle_metrics(const HttpRequest& request, Exchange& exchange);
  void handle_version(const HttpRequest& request, Exchange& exchange);
  void handle_models(const HttpRequest& request, Exchange& exchange);
  void handle_model_request(const HttpRequest& request, std::shared_ptr<Exchange> exchange);
  bool host_allowed(const HttpRequest& request) const;
  std::string allowed_origin(const HttpRequest& request) const;  // empty: none
  int64_t queue_limit(const serving::ServedModel& model) const;

  ApiServerOptions options_;
  bool loopback_only_ = false;
  serving::ModelRegistry& registry_;
  std::unique_ptr<WorkPool> workers_;
  std::unique_ptr<HttpServer> http_;
};

}  // namespace bm::daemon::openai
