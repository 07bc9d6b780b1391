#include "daemon/openai/api_server.h"

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/openai/openai_error.h"
#include "daemon/openai/request_json.h"
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
  return request.header("Authorization") == "Bearer " + model.settings.api_key;
}

json model_card(const ServedModel& model, const std::string& id) {
  return {{"id", id},
          {"object", "model"},
          {"created", 0},
          {"owned_by", "bmserver"},
          {"root", model.repo_id},
          {"parent", nullptr},
          {"max_model_len", model.generator ? model.generator->max_model_len() : 0}};
}

}  // namespace

ApiServer::ApiServer(ApiServerOptions options, serving::ModelRegistry& registry)
    : options_(std::move(options)), registry_(registry) {
  if (!options_.cors_allow_origin.empty())
    options_.http.default_headers.push_back({"Access-Control-Allow-Origin", options_.cors_allow_origin});
  http_ = std::make_unique<HttpServer>(
      options_.http, [this](const HttpRequest& r, std::shared_ptr<Exchange> e) { route(r, std::move(e)); });
}

ApiServer::~ApiServer() {
  stop();
}
absl::Status ApiServer::start() {
  return http_->start();
}
void ApiServer::stop() {
  http_->stop();
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

void ApiServer::route(const HttpRequest& request, std::shared_ptr<Exchange> exchange) {
  const std::string& path = request.path;
  const std::string& method = request.method;

  if (method == "OPTIONS") {
    HttpResponse r;
    r.status = 204;
    r.content_type = "text/plain";
    r.headers = {{"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
                 {"Access-Control-Allow-Headers", "Authorization, Content-Type"},
                 {"Access-Control-Max-Age", "86400"}};
    exchange->respond(std::move(r));
    return;
  }

  if (path == "/health" || path == "/v1/health") {
    json loading = json::array(), failed = json::array();
    for (const auto& m : registry_.list()) {
      if (m->state() == ModelState::kLoading) loading.push_back(m->name);
      if (m->state() == ModelState::kFailed) failed.push_back({{"model", m->name}, {"error", m->error()}});
    }
    if (!loading.empty()) {
      exchange->respond(json_response({{"status", "loading"}, {"loading", loading}}, 503));
    } else {
      exchange->respond(json_response({{"status", "ok"}, {"failed", failed}}));
    }
    return;
  }

  if (path == "/metrics" && method == "GET") {
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
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = render_metrics(gauges, http_->stats().open_connections.load(), http_->stats().requests_total.load());
    exchange->respond(std::move(r));
    return;
  }

  if (path == "/v1/models" || absl::StartsWith(path, "/v1/models/")) {
    if (method != "GET") return exchange->respond(openai_error(405, "use GET for " + path));
    json data = json::array();
    std::string wanted = path.size() > 11 ? path.substr(11) : "";
    for (const auto& m : registry_.list()) {
      if (m->state() != ModelState::kReady || !key_accepted(*m, request)) continue;
      if (!wanted.empty()) {
        if (m->answers_to(wanted)) return exchange->respond(json_response(model_card(*m, wanted)));
        continue;
      }
      data.push_back(model_card(*m, m->name));
      if (m->repo_id != m->name) data.push_back(model_card(*m, m->repo_id));
    }
    if (!wanted.empty())
      return exchange->respond(openai_error(404, "The model '" + wanted + "' does not exist.", "model"));
    return exchange->respond(json_response({{"object", "list"}, {"data", data}}));
  }

  bool is_chat = path == "/v1/chat/completions";
  bool is_completion = path == "/v1/completions";
  bool is_tokenize = path == "/tokenize" || path == "/v1/tokenize";
  bool is_detokenize = path == "/detokenize" || path == "/v1/detokenize";
  if (!is_chat && !is_completion && !is_tokenize && !is_detokenize)
    return exchange->respond(openai_error(404, absl::StrCat("no route for ", method, " ", path)));
  if (method != "POST") return exchange->respond(openai_error(405, "use POST for " + path));

  absl::StatusOr<json> parsed = parse_request_json(request.body);
  if (!parsed.ok())
    return exchange->respond(openai_error(400, absl::StrCat("the request body is ", parsed.status().message())));
  json& body = *parsed;
  if (!body.is_object()) return exchange->respond(openai_error(400, "the request body must be a JSON object"));
  if (!body.contains("model") || !body["model"].is_string())
    return exchange->respond(
        openai_error(400, "'model' must name a served model (GET /v1/models lists them)", "model"));
  std::string name = body["model"].get<std::string>();
  std::shared_ptr<ServedModel> model = registry_.find(name);
  if (!model) {
    std::vector<std::string> names;
    for (const auto& m : registry_.list()) names.push_back(m->name);
    return exchange->respond(openai_error(404,
                                          absl::StrCat("The model '", name, "' does not exist. Served: ",
                                                       names.empty() ? "none" : absl::StrJoin(names, ", "), "."),
                                          "model"));
  }
  if (!key_accepted(*model, request))
    return exchange->respond(openai_error(401, "a valid API key is required: send 'Authorization: Bearer <key>'"));
  if (model->state() == ModelState::kLoading)
    return exchange->respond(openai_error(503, "model '" + model->name + "' is still loading"));
  if (model->state() == ModelState::kFailed)
    return exchange->respond(openai_error(503, "model '" + model->name + "' failed: " + model->error()));

#if !BMSERVER_HAVE_TOKENIZER
  return exchange->respond(
      openai_error(503, "this bmserverd was built without the engine's tokenizer, so it cannot generate"));
#else
  if (is_tokenize) {
    std::vector<int32_t> ids;
    if (body.contains("messages")) {
      std::variant<std::string, ApiError> prompt = render_chat_prompt(*model, body, /*include_tools=*/true, nullptr);
      if (auto* err = std::get_if<ApiError>(&prompt)) return exchange->respond(err->response());
      ids = model->tokenizer->encode(std::get<std::string>(prompt), body.value("add_special_tokens", false));
    } else if (body.contains("prompt") && body["prompt"].is_string()) {
      ids = model->tokenizer->encode(body["prompt"].get<std::string>(), body.value("add_special_tokens", true));
    } else {
      return exchange->respond(openai_error(400, "send 'prompt' (a string) or 'messages'", "prompt"));
    }
    return exchange->respond(
        json_response({{"count", ids.size()}, {"max_model_len", model->generator->max_model_len()}, {"tokens", ids}}));
  }
  if (is_detokenize) {
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

  std::variant<SessionOptions, ApiError> prepared =
      is_chat ? prepare_chat(*model, body) : prepare_completion(*model, body);
  if (auto* err = std::get_if<ApiError>(&prepared)) return exchange->respond(err->response());
  GenerationSession::start(model, std::get<SessionOptions>(std::move(prepared)), std::move(exchange));
#endif
}

}  // namespace bm::daemon::openai
