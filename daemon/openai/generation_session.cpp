#include "daemon/openai/generation_session.h"

#include <random>

#include "daemon/openai/openai_error.h"
#include "engine/tokenizer/tokenizer.h"

namespace bm::daemon::openai {
namespace {

using json = nlohmann::json;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string reason_name(serving::FinishReason reason, bool had_tool_calls) {
  switch (reason) {
    case serving::FinishReason::kStop:
      return had_tool_calls ? "tool_calls" : "stop";
    case serving::FinishReason::kLength:
      return "length";
    case serving::FinishReason::kAbort:
      return "abort";
    case serving::FinishReason::kError:
      return "error";
  }
  return "stop";
}

json bytes_of(const std::string& s) {
  json out = json::array();
  for (unsigned char c : s) out.push_back(static_cast<int>(c));
  return out;
}

json tool_call_json(const ToolCall& call, int index, bool with_index) {
  json j = {{"id", call.id}, {"type", "function"}, {"function", {{"name", call.name}, {"arguments", call.arguments}}}};
  if (with_index) j["index"] = index;
  return j;
}

}  // namespace

std::string random_id(const std::string& prefix) {
  static constexpr char kHex[] = "0123456789abcdef";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = prefix;
  for (int i = 0; i < 32; ++i) id += kHex[rng() % 16];
  return id;
}

GenerationSession::GenerationSession(std::shared_ptr<serving::ServedModel> model, SessionOptions options,
                                     std::shared_ptr<Exchange> exchange)
    : model_(std::move(model)), options_(std::move(options)), exchange_(std::move(exchange)) {
  id_ = random_id(options_.kind == ResponseKind::kChat ? "chatcmpl-" : "cmpl-");
  created_ =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void GenerationSession::start(std::shared_ptr<serving::ServedModel> model, SessionOptions options,
                              std::shared_ptr<Exchange> exchange) {
  std::shared_ptr<GenerationSession> session(
      new GenerationSession(std::move(model), std::move(options), std::move(exchange)));
  session->submit_all();
}

void GenerationSession::submit_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const ChoiceSpec& spec : options_.choices) {
    Choice choice;
    choice.text = std::make_unique<ChoiceText>(*model_->tokenizer, spec.text);
    choices_.push_back(std::move(choice));
  }
  for (int32_t count : options_.prompt_token_counts) {
    model_->metrics.prompt_tokens_total += count;
    model_->metrics.request_prompt_tokens.observe(count);
  }
  if (!options_.choices.empty()) {
    const double n = static_cast<double>(options_.choices.size());
    const double max_tokens = options_.choices.front().params.max_tokens;
    model_->metrics.request_params_n.observe(n);
    model_->metrics.request_params_max_tokens.observe(max_tokens);
    model_->metrics.request_max_num_generation_tokens.observe(n * max_tokens);
  }
  std::weak_ptr<GenerationSession> weak = weak_from_this();
  exchange_->on_disconnect([weak] {
    if (auto self = weak.lock()) self->abort_all();
  });
  for (size_t i = 0; i < choices_.size(); ++i) {
    ChoiceSpec& spec = options_.choices[i];
    // Choices are separate engine requests: a shared seed would make the n samples identical, so each choice
    // gets its own seed derived from the request's (still reproducible across runs).
    if (spec.params.seed && i > 0) *spec.params.seed += 0x9e3779b97f4a7c15ULL * i;
    auto self = shared_from_this();  // the engine's callback keeps the session alive until its last event
    absl::StatusOr<std::unique_ptr<serving::GenerationHandle>> handle = model_->generator->submit(
        spec.prompt_ids, spec.params,
        [self, i](serving::GenerationEvent event) { self->on_event(i, std::move(event)); }, spec.media);
    if (!handle.ok()) {
      error_ = std::string(handle.status().message());
      finished_ = true;
      for (Choice& c : choices_)
        if (c.handle) c.handle->abort();
      const bool unavailable = absl::IsResourceExhausted(handle.status()) || absl::IsUnavailable(handle.status());
      exchange_->respond(openai_error(unavailable ? 503 : 400, error_));
      model_->metrics.request_errors_total++;
      return;
    }
    choices_[i].handle = *std::move(handle);
    if (!spec.echo_prefix.empty()) choices_[i].full_text = spec.echo_prefix;
  }
  if (options_.stream) {
    exchange_->begin_stream(200, "text/event-stream");
    stream_started_ = true;
  }
}

void GenerationSession::abort_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Choice& c : choices_)
    if (c.handle && !c.finish_reason) c.handle->abort();
}

json GenerationSession::logprobs_json(Choice& choice, const std::vector<serving::TokenLogprob>& logprobs) {
  const engine::Tokenizer& tok = *model_->tokenizer;
  auto piece = [&](int32_t id) {
    int32_t ids[1] = {id};
    return tok.decode(std::span<const int32_t>(ids, 1), /*skip_special_tokens=*/false);
  };
  if (options_.kind == ResponseKind::kChat) {
    json content = json::array();
    for (const serving::TokenLogprob& lp : logprobs) {
      std::string text = piece(lp.token_id);
      json top = json::array();
      for (const auto& [id, value] : lp.top) {
        std::string t = piece(id);
        top.push_back({{"token", t}, {"logprob", value}, {"bytes", bytes_of(t)}});
      }
      content.push_back({{"token", text}, {"logprob", lp.logprob}, {"bytes", bytes_of(text)}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(), offsets = json::array();
  for (const serving::TokenLogprob& lp : logprobs) {
    std::string text = piece(lp.token_id);
    tokens.push_back(text);
    token_logprobs.push_back(lp.logprob);
    json top = json::object();
    for (const auto& [id, value] : lp.top) top[piece(id)] = value;
    top_logprobs.push_back(top);
    offsets.push_back(choice.text_offset);
    choice.text_offset += text.size();
  }
  return {
      {"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top_logprobs}, {"text_offset", offsets}};
}

void GenerationSession::send_json(const json& chunk) {
  exchange_->send("data: " + dump(chunk) + "\n\n");
}

void GenerationSession::emit_delta(size_t index, const TextDelta& delta,
                                   const std::vector<serving::TokenLogprob>& logprobs, bool final, bool per_token) {
  Choice& c = choices_[index];
  c.content += delta.content;
  c.reasoning += delta.reasoning;
  c.full_text += delta.text;
  for (const ToolCall& call : delta.tool_calls) c.tool_calls.push_back(call);
  json lp = nullptr;
  if (!logprobs.empty()) lp = logprobs_json(c, logprobs);
  if (!options_.stream) {
    if (!logprobs.empty()) c.raw_logprobs.insert(c.raw_logprobs.end(), logprobs.begin(), logprobs.end());
    return;
  }
  // The first chunk of a choice goes out with its first token, even when that token's text is held back; so does
  // every later token (an empty delta when its bytes end inside a UTF-8 character, it is a skipped special token
  // or a stop string holds its text back), as vLLM streams, so that a client's inter-token latencies are per
  // token. Only a tool-call parser's hold-back sends nothing, as vLLM's parsers do.
  bool has_payload = !delta.empty() || !lp.is_null() || final || !c.sent_role || per_token;
  if (options_.kind == ResponseKind::kCompletion)
    has_payload = !delta.text.empty() || !lp.is_null() || final || !c.sent_role || per_token;
  if (!has_payload) return;
  json choice = {{"index", index}, {"logprobs", lp}, {"finish_reason", final ? json(*c.finish_reason) : json(nullptr)}};
  if (options_.kind == ResponseKind::kChat) {
    json d = json::object();
    if (!c.sent_role) d["role"] = "assistant";
    if (!delta.reasoning.empty()) d["reasoning_content"] = delta.reasoning;
    if (!delta.content.empty() || ((!c.sent_role || per_token) && delta.reasoning.empty() && delta.tool_calls.empty()))
      d["content"] = delta.content;
    if (!delta.tool_calls.empty()) {
      json calls = json::array();
      for (const ToolCall& call : delta.tool_calls)
        calls.push_back(tool_call_json(call, c.num_tool_calls_sent++, true));
      d["tool_calls"] = calls;
    }
    choice["delta"] = d;
  } else {
    choice["text"] =
        (!c.sent_role && !options_.choices[index].echo_prefix.empty() ? options_.choices[index].echo_prefix : "") +
        delta.text;
  }
  c.sent_role = true;
  json chunk = {{"id", id_},
                {"object", options_.kind == ResponseKind::kChat ? "chat.completion.chunk" : "text_completion"},
                {"created", created_},
                {"model", options_.model_name},
                {"choices", json::array({choice})}};
  if (options_.include_usage) chunk["usage"] = nullptr;
  send_json(chunk);
}

void GenerationSession::on_event(size_t index, serving::GenerationEvent event) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_ || index >= choices_.size()) return;
  Choice& c = choices_[index];
  if (c.finish_reason) return;
  auto now = std::chrono::steady_clock::now();
  if (!event.token_ids.empty()) {
    if (!first_token_time_) {
      first_token_time_ = now;
      model_->metrics.time_to_first_token_seconds.observe(std::chrono::duration<double>(now - start_time_).count());
    } else {
      model_->metrics.inter_token_latency_seconds.observe(
          std::chrono::duration<double>(now - last_token_time_).count());
    }
    last_token_time_ = now;
    model_->metrics.generation_tokens_total += event.token_ids.size();
  }
  cached_prompt_tokens_ = std::max(cached_prompt_tokens_, event.num_cached_prompt_tokens);
  c.num_cached_prompt_tokens = std::max(c.num_cached_prompt_tokens, event.num_cached_prompt_tokens);
  c.num_tokens += static_cast<int32_t>(event.token_ids.size());
  TextDelta delta = c.text->push(event.token_ids);
  if (c.text->stopped()) {
    c.finish_reason = c.text->num_tool_calls() > 0 ? "tool_calls" : "stop";
    if (c.handle) c.handle->abort();  // abort() only enqueues, so calling it from the engine's callback is safe
  } else if (event.finish) {
    if (*event.finish == serving::FinishReason::kError)
      error_ = event.error.empty() ? "generation failed" : event.error;
    TextDelta rest = c.text->finish();
    delta.text += rest.text;
    delta.content += rest.content;
    delta.reasoning += rest.reasoning;
    for (ToolCall& call : rest.tool_calls) delta.tool_calls.push_back(std::move(call));
    c.finish_reason = reason_name(*event.finish, c.text->num_tool_calls() > 0);
  }
  if (!error_.empty() && c.finish_reason == "error" && !options_.stream) {
    fail(500, error_);
    return;
  }
  emit_delta(index, delta, event.logprobs, c.finish_reason.has_value(),
             !event.token_ids.empty() && !c.text->parses_tool_calls());
  if (c.finish_reason) {
    model_->metrics.request_generation_tokens.observe(c.num_tokens);
    model_->metrics.count_finished(*c.finish_reason);
    model_->metrics.prefix_cache_queries_total += options_.choices[index].prompt_ids.size();
    model_->metrics.prefix_cache_hits_total += c.num_cached_prompt_tokens;
  }
  finish_if_done();
}

json GenerationSession::usage_json() const {
  int32_t prompt = 0, completion = 0;
  for (int32_t p : options_.prompt_token_counts) prompt += p;
  for (const Choice& c : choices_) completion += c.num_tokens;
  json usage = {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
  if (cached_prompt_tokens_ > 0) usage["prompt_tokens_details"] = {{"cached_tokens", cached_prompt_tokens_}};
  return usage;
}

void GenerationSession::fail(int status, const std::string& message) {
  finished_ = true;
  model_->metrics.request_errors_total++;
  for (Choice& c : choices_)
    if (c.handle && !c.finish_reason) c.handle->abort();
  if (stream_started_) {
    send_json(json::parse(openai_error(status, message).body));
    exchange_->send("data: [DONE]\n\n");
    exchange_->end_stream();
  } else {
    exchange_->respond(openai_error(status, message));
  }
}

void GenerationSession::finish_if_done() {
  for (const Choice& c : choices_)
    if (!c.finish_reason) return;
  finished_ = true;
  model_->metrics.e2e_request_latency_seconds.observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time_).count());
  if (options_.stream) {
    if (options_.include_usage) {
      send_json({{"id", id_},
                 {"object", options_.kind == ResponseKind::kChat ? "chat.completion.chunk" : "text_completion"},
                 {"created", created_},
                 {"model", options_.model_name},
                 {"choices", json::array()},
                 {"usage", usage_json()}});
    }
    exchange_->send("data: [DONE]\n\n");
    exchange_->end_stream();
    return;
  }
  json choices = json::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    Choice& c = choices_[i];
    json lp = nullptr;
    if (!c.raw_logprobs.empty()) {
      c.text_offset = options_.choices[i].echo_prefix.size();
      lp = logprobs_json(c, c.raw_logprobs);
    }
    if (options_.kind == ResponseKind::kChat) {
      json message = {{"role", "assistant"},
                      {"content", c.content.empty() && !c.tool_calls.empty() ? json(nullptr) : json(c.content)}};
      if (!c.reasoning.empty()) message["reasoning_content"] = c.reasoning;
      if (!c.tool_calls.empty()) {
        json calls = json::array();
        for (size_t k = 0; k < c.tool_calls.size(); ++k)
          calls.push_back(tool_call_json(c.tool_calls[k], static_cast<int>(k), false));
        message["tool_calls"] = calls;
      } else {
        message["tool_calls"] = json::array();
      }
      choices.push_back({{"index", i}, {"message", message}, {"logprobs", lp}, {"finish_reason", *c.finish_reason}});
    } else {
      choices.push_back({{"index", i}, {"text", c.full_text}, {"logprobs", lp}, {"finish_reason", *c.finish_reason}});
    }
  }
  json body = {
      {"id", id_},           {"object", options_.kind == ResponseKind::kChat ? "chat.completion" : "text_completion"},
      {"created", created_}, {"model", options_.model_name},
      {"choices", choices},  {"usage", usage_json()}};
  HttpResponse response;
  response.body = dump(body);
  exchange_->respond(std::move(response));
}

}  // namespace bm::daemon::openai
