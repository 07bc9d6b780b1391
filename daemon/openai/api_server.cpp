#include "daemon/openai/api_server.h"

#include <chrono>
#include <string_view>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/constant_time.h"
#include "common/version.h"
#include "daemon/openai/openai_error.h"
#include "daemon/openai/request_body.h"
#include "daemon/openai/work_pool.h"
#if BMSERVER_HAVE_TOKENIZER
#include "daemon/openai/generation_session.h"
#include "daemon/openai/request_preparation.h"
#include "engine/tokenizer/tokenizer.h"
#endif

namespace bm::daemon::openai {
namespace {

using json = RequestJson;  // bodies keep their key order (chat templates see it)
using serving::ModelState;
using serving::ServedModel;

HttpResponse json_response(const json& body, int status = 200) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

bool key_accepted(const ServedModel& model, const HttpRequest& request) {
  if (model.settings.api_key.empty()) return true;
  return common::constant_time_equals(request.header("Authorization"), "Bearer " + model.settings.api_key);
}

// The original served every model also as "DEFAULT" (its benchmark always asked for that name).
constexpr std::string_view kDefaultModelName = "DEFAULT";

// vLLM's model card, field for field (ModelCard in vllm/entrypoints/openai/protocol.py).
json model_card(const ServedModel& model, const std::string& id) {
  const int64_t created =
      absl::ToUnixSeconds(absl::Now()) -
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - model.started_at).count();
  json permission = {{"id", "modelperm-" + model.name},
                     {"object", "model_permission"},
                     {"created", created},
                     {"allow_create_engine", false},
                     {"allow_sampling", true},
                     {"allow_logprobs", true},
                     {"allow_search_indices", false},
                     {"allow_view", true},
                     {"allow_fine_tuning", false},
                     {"organization", "*"},
                     {"group", nullptr},
                     {"is_blocking", false}};
  return {{"id", id},
          {"object", "model"},
          {"created", created},
          {"owned_by", "bmserver"},
          {"root", model.repo_id},
          {"parent", nullptr},
          {"max_model_len", model.generator ? model.generator->max_model_len() : 0},
          {"permission", json::array({permission})}};
}

bool is_loopback_name(std::string_view host) {
  if (host == "localhost" || host == "localhost." || host == "::1" || host == "[::1]") return true;
  // 127.0.0.0/8 written as a dotted quad.
  std::vector<absl::string_view> parts = absl::StrSplit(absl::string_view(host.data(), host.size()), '.');
  int first = 0;
  return parts.size() == 4 && absl::SimpleAtoi(parts[0], &first) && first == 127;
}

// The host name of a Host header, without its port.
std::string_view host_name(std::string_view header) {
  if (header.starts_with('[')) {
    size_t close = header.find(']');
    return close == std::string_view::npos ? header : header.substr(0, close + 1);
  }
  size_t colon = header.find(':');
  return colon == std::string_view::npos ? header : header.substr(0, colon);
}

// Adds the CORS headers for one allowed origin to everything the handlers send.
class CorsExchange final : public Exchange {
 public:
  CorsExchange(std::shared_ptr<Exchange> inner, std::string origin)
      : inner_(std::move(inner)), origin_(std::move(origin)) {}
  void respond(HttpResponse response) override {
    add(response.headers);
    inner_->respond(std::move(response));
  }
  void begin_stream(int status, std::string content_type,
                    std::vector<std::pair<std::string, std::string>> headers) override {
    add(headers);
    inner_->begin_stream(status, std::move(content_type), std::move(headers));
  }
  void send(std::string bytes) override { inner_->send(std::move(bytes)); }
  void end_stream() override { inner_->end_stream(); }
  void on_disconnect(std::function<void()> callback) override { inner_->on_disconnect(std::move(callback)); }
  bool is_disconnected() const override { return inner_->is_disconnected(); }

 private:
  void add(std::vector<std::pair<std::string, std::string>>& headers) const {
    headers.push_back({"Access-Control-Allow-Origin", origin_});
    if (origin_ != "*") headers.push_back({"Vary", "Origin"});
  }
  std::shared_ptr<Exchange> inner_;
  std::string origin_;
};

}  // namespace

enum class Lane {
  kIo,      // answers at once from memory: runs on the HTTP I/O thread
  kWorker,  // parses a body, renders a template or tokenizes: runs on the worker pool
};

struct ApiServer::Route {
  std::string_view path;
  bool is_prefix;  // path is a prefix (/v1/models/{id})
  std::string_view method;
  Lane lane;
  void (ApiServer::*handle)(const HttpRequest&, Exchange&);  // kIo routes; kWorker ones run handle_model_request
};

ApiServer::ApiServer(ApiServerOptions options, serving::ModelRegistry& registry)
    : options_(std::move(options)), registry_(registry) {
  loopback_only_ = is_loopback_name(options_.http.host);
  workers_ = std::make_unique<WorkPool>(options_.num_workers);
  http_ = std::make_unique<HttpServer>(
      options_.http, [this](HttpRequest r, std::shared_ptr<Exchange> e) { route(std::move(r), std::move(e)); });
}

ApiServer::~ApiServer() {
  stop();
}
absl::Status ApiServer::start() {
  return http_->start();
}
void ApiServer::stop() {
  http_->stop();
  workers_.reset();  // runs what was queued (their exchanges see the disconnect) and joins
}
uint16_t ApiServer::port() const {
  return http_->port();
}
const HttpServerStats& ApiServer::stats() const {
  return http_->stats();
}
std::string ApiServer::base_url() const {
  return absl::StrCat("http://", options_.http.host, ":", port());
}

bool ApiServer::host_allowed(const HttpRequest& request) const {
  // Bound to loopback, only local names may address us: a web page that rebinds its own DNS name to 127.0.0.1
  // sends its own name as Host, and is refused before it can reach a model.
  if (!loopback_only_) return true;
  auto it = request.headers.find("Host");
  if (it == request.headers.end()) return true;  // HTTP/1.0 clients; browsers always send Host
  return is_loopback_name(host_name(it->second));
}

std::string ApiServer::allowed_origin(const HttpRequest& request) const {
  if (options_.allowed_origins.empty()) return {};
  std::string origin = request.header("Origin");
  for (const std::string& allowed : options_.allowed_origins) {
    if (allowed == "*") return "*";
    if (!origin.empty() && absl::EqualsIgnoreCase(allowed, origin)) return origin;
  }
  return {};
}

int64_t ApiServer::queue_limit(const ServedModel& model) const {
  const int64_t running = model.generator ? model.generator->max_num_seqs() : 0;
  return running + (options_.max_waiting_seqs > 0 ? options_.max_waiting_seqs : 4 * running);
}

void ApiServer::route(HttpRequest request, std::shared_ptr<Exchange> exchange) {
  if (!host_allowed(request))
    return exchange->respond(openai_error(
        403, absl::StrCat("Host '", request.header("Host").substr(0, 256),
                          "' is not allowed: this server listens on loopback and answers only to local host names")));
  if (std::string origin = allowed_origin(request); !origin.empty())
    exchange = std::make_shared<CorsExchange>(std::move(exchange), std::move(origin));
  if (request.method == "OPTIONS") return handle_options(request, *exchange);

  const Route* found = nullptr;
  bool path_known = false;
  for (const Route& r : routes()) {
    const bool path_matches =
        r.is_prefix ? request.path.starts_with(r.path) || request.path == r.path.substr(0, r.path.size() - 1)
                    : request.path == r.path;
    if (!path_matches) continue;
    path_known = true;
    if (request.method == r.method) {
      found = &r;
      break;
    }
  }
  if (!found) {
    if (path_known)
      return exchange->respond(openai_error(405, absl::StrCat("method ", request.method.substr(0, 16),
                                                              " is not allowed for ", request.path.substr(0, 256))));
    return exchange->respond(openai_error(
        404, absl::StrCat("no route for ", request.method.substr(0, 16), " ", request.path.substr(0, 256))));
  }
  if (found->lane == Lane::kIo) return (this->*(found->handle))(request, *exchange);
  workers_->post([this, request = std::move(request), exchange = std::move(exchange)]() mutable {
    try {
      handle_model_request(request, exchange);
    } catch (...) {
      // A bug, not bad input (that is an ApiError): the request fails, the pool logs it, the daemon goes on.
      exchange->respond(openai_error(500, "internal error while preparing the request"));
      throw;
    }
  });
}

void ApiServer::handle_options(const HttpRequest&, Exchange& exchange) {
  HttpResponse r;
  r.status = 204;
  r.content_type = "text/plain";
  r.headers = {{"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
               {"Access-Control-Allow-Headers", "Authorization, Content-Type"},
               {"Access-Control-Max-Age", "86400"}};
  exchange.respond(std::move(r));
}

void ApiServer::handle_health(const HttpRequest&, Exchange& exchange) {
  json loading = json::array(), failed = json::array();
  for (const auto& m : registry_.list()) {
    if (m->state() == ModelState::kLoading) loading.push_back(m->name);
    if (m->state() == ModelState::kFailed) failed.push_back({{"model", m->name}, {"error", without_paths(m->error())}});
  }
  if (!loading.empty()) return exchange.respond(json_response({{"status", "loading"}, {"loading", loading}}, 503));
  exchange.respond(json_response({{"status", "ok"}, {"failed", failed}}));
}

// As vLLM's GET /version: {"version": "..."}.
void ApiServer::handle_version(const HttpRequest&, Exchange& exchange) {
  exchange.respond(json_response({{"version", std::string(common::version())}}));
}

void ApiServer::handle_metrics(const HttpRequest&, Exchange& exchange) {
  std::vector<ModelGauges> gauges;
  for (const auto& m : registry_.list()) {
    ModelGauges g;
    g.model_name = m->name;
    g.metrics = &m->metrics;
    if (m->state() == ModelState::kReady && m->generator) {
      serving::GeneratorStats s = m->generator->stats();
      g.num_running = s.num_running;
      g.num_waiting = s.num_waiting;
      g.kv_cache_usage = s.num_kv_blocks ? static_cast<double>(s.num_kv_blocks_in_use) / s.num_kv_blocks : 0;
      g.num_preemptions = s.num_preemptions;
      g.kv_capacity_tokens = s.kv_capacity_tokens;
      g.num_kv_blocks = s.num_kv_blocks;
    }
    gauges.push_back(g);
  }
  const HttpServerStats& s = http_->stats();
  HttpResponse r;
  r.content_type = "text/plain; version=0.0.4";
  r.body = render_metrics(gauges, {s.open_connections.load(), s.requests_total.load(), s.connections_refused.load(),
                                   s.streams_dropped.load()});
  exchange.respond(std::move(r));
}

void ApiServer::handle_models(const HttpRequest& request, Exchange& exchange) {
  json data = json::array();
  const std::string& path = request.path;
  std::string wanted = path.size() > 11 ? path.substr(11) : "";
  std::vector<std::shared_ptr<ServedModel>> models = registry_.list();
  for (const auto& m : models) {
    if (m->state() != ModelState::kReady || !key_accepted(*m, request)) continue;
    const bool is_default = models.size() == 1 && !m->answers_to(std::string(kDefaultModelName));
    if (!wanted.empty()) {
      if (m->answers_to(wanted) || (is_default && wanted == kDefaultModelName))
        return exchange.respond(json_response(model_card(*m, wanted)));
      continue;
    }
    data.push_back(model_card(*m, m->name));
    if (m->repo_id != m->name) data.push_back(model_card(*m, m->repo_id));
    if (is_default) data.push_back(model_card(*m, std::string(kDefaultModelName)));
  }
  if (!wanted.empty())
    return exchange.respond(openai_error(404, "The model '" + wanted.substr(0, 256) + "' does not exist.", "model"));
  exchange.respond(json_response({{"object", "list"}, {"data", data}}));
}

// Runs on a worker: everything here may take time in proportion to the body.
void ApiServer::handle_model_request(const HttpRequest& request, std::shared_ptr<Exchange> exchange) {
  if (exchange->is_disconnected()) return;  // the client left while the request waited for a worker
  std::variant<json, ApiError> parsed = parse_request_body(request.body);
  if (auto* err = std::get_if<ApiError>(&parsed)) return exchange->respond(err->response());
  const json& body = std::get<json>(parsed);
  if (!body.contains("model") || !body["model"].is_string())
    return exchange->respond(
        openai_error(400, "'model' must name a served model (GET /v1/models lists them)", "model"));
  std::string name = body["model"].get<std::string>();
  std::shared_ptr<ServedModel> model = registry_.find(name);
  if (!model && name == kDefaultModelName) {
    std::vector<std::shared_ptr<ServedModel>> all = registry_.list();
    if (all.size() == 1) model = all.front();
    if (all.size() > 1) {
      std::vector<std::string> names;
      for (const auto& m : all)
        if (key_accepted(*m, request)) names.push_back(m->name);
      return exchange->respond(openai_error(
          400,
          absl::StrCat(
              "'DEFAULT' names the served model only while one is served; ", all.size(),
              " are, so name one of them: ", names.empty() ? "(none your key may use)" : absl::StrJoin(names, ", ")),
          "model"));
    }
  }
  if (!model) {
    // Models behind a key this request does not carry are not named.
    std::vector<std::string> names;
    for (const auto& m : registry_.list())
      if (key_accepted(*m, request)) names.push_back(m->name);
    return exchange->respond(openai_error(404,
                                          absl::StrCat("The model '", name.substr(0, 256), "' does not exist. Served: ",
                                                       names.empty() ? "none" : absl::StrJoin(names, ", "), "."),
                                          "model"));
  }
  if (!key_accepted(*model, request))
    return exchange->respond(openai_error(401, "a valid API key is required: send 'Authorization: Bearer <key>'"));
  if (model->state() == ModelState::kLoading)
    return exchange->respond(openai_error(503, "model '" + model->name + "' is still loading"));
  if (model->state() == ModelState::kFailed)
    return exchange->respond(openai_error(503, "model '" + model->name + "' failed: " + without_paths(model->error())));

#if !BMSERVER_HAVE_TOKENIZER
  return exchange->respond(
      openai_error(503, "this bmserverd was built without the engine's tokenizer, so it cannot generate"));
#else
  const std::string& path = request.path;
  if (path == "/tokenize" || path == "/v1/tokenize") {
    std::vector<int32_t> ids;
    if (body.contains("messages")) {
      // Images and videos count with their expanded pad tokens, as the chat completion would.
      std::variant<ChatPrompt, ApiError> prompt =
          prepare_chat_prompt(*model, body, /*include_tools=*/true, nullptr, body.value("add_special_tokens", false),
                              /*for_generation=*/false);
      if (auto* err = std::get_if<ApiError>(&prompt)) return exchange->respond(err->response());
      ids = std::get<ChatPrompt>(std::move(prompt)).ids;
    } else if (body.contains("prompt") && body["prompt"].is_string()) {
      ids = model->tokenizer->encode(body["prompt"].get<std::string>(), body.value("add_special_tokens", true));
    } else {
      return exchange->respond(openai_error(400, "send 'prompt' (a string) or 'messages'", "prompt"));
    }
    // Written directly: a JSON array of a long prompt's ids costs 16 bytes a value before it is even dumped.
    HttpResponse r;
    r.body = absl::StrCat("{\"count\":", ids.size(), ",\"max_model_len\":", model->generator->max_model_len(),
                          ",\"tokens\":[", absl::StrJoin(ids, ","), "]}");
    return exchange->respond(std::move(r));
  }
  if (path == "/detokenize" || path == "/v1/detokenize") {
    if (!body.contains("tokens") || !body["tokens"].is_array())
      return exchange->respond(openai_error(400, "'tokens' must be a list of token ids", "tokens"));
    std::vector<int32_t> ids;
    for (const json& t : body["tokens"]) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= model->tokenizer->vocab_size())
        return exchange->respond(openai_error(
            400, absl::StrCat("'tokens' must hold ids in [0, ", model->tokenizer->vocab_size(), ")"), "tokens"));
      ids.push_back(t.get<int32_t>());
    }
    return exchange->respond(json_response({{"prompt", model->tokenizer->decode(ids, /*skip_special_tokens=*/false)}}));
  }

  const bool is_chat = path == "/v1/chat/completions";
  std::variant<SessionOptions, ApiError> prepared =
      is_chat ? prepare_chat(*model, body) : prepare_completion(*model, body);
  if (auto* err = std::get_if<ApiError>(&prepared)) return exchange->respond(err->response());
  SessionOptions& options = std::get<SessionOptions>(prepared);
  const int64_t limit = queue_limit(*model);
  options.admission = serving::Admission::try_admit(model, static_cast<int64_t>(options.choices.size()), limit);
  if (!options.admission) {
    model->metrics.requests_rejected_total++;
    ApiError full{503,
                  absl::StrCat("model '", model->name, "' is at its queue limit (", limit,
                               " sequences running or waiting); retry later"),
                  ""};
    full.retry_after_seconds = 1;
    return exchange->respond(full.response());
  }
  GenerationSession::start(model, std::move(options), std::move(exchange));
#endif
}

const std::vector<ApiServer::Route>& ApiServer::routes() {
  static const std::vector<Route> table = {
      {"/health", false, "GET", Lane::kIo, &ApiServer::handle_health},
      {"/v1/health", false, "GET", Lane::kIo, &ApiServer::handle_health},
      {"/metrics", false, "GET", Lane::kIo, &ApiServer::handle_metrics},
      {"/version", false, "GET", Lane::kIo, &ApiServer::handle_version},
      {"/v1/models/", true, "GET", Lane::kIo, &ApiServer::handle_models},
      {"/v1/chat/completions", false, "POST", Lane::kWorker, nullptr},
      {"/v1/completions", false, "POST", Lane::kWorker, nullptr},
      {"/tokenize", false, "POST", Lane::kWorker, nullptr},
      {"/v1/tokenize", false, "POST", Lane::kWorker, nullptr},
      {"/detokenize", false, "POST", Lane::kWorker, nullptr},
      {"/v1/detokenize", false, "POST", Lane::kWorker, nullptr},
  };
  return table;
}

}  // namespace bm::daemon::openai
