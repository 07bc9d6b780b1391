#pragma once
// One /v1/chat/completions or /v1/completions request in flight: its choices (n per prompt, each submitted to
// the engine on its own so that a stop string or a disconnect can end one without the others), the text
// pipeline of each, and the response — SSE chunks as tokens come, or one JSON body at the end.
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/openai/choice_text.h"
#include "daemon/openai/http_types.h"
#include "daemon/serving/generator.h"
#include "daemon/serving/served_model.h"

namespace bm::daemon::openai {

enum class ResponseKind { kChat, kCompletion };

struct ChoiceSpec {
  std::vector<int32_t> prompt_ids;
  serving::GenerationParams params;
  ChoiceTextOptions text;
  std::string echo_prefix;                           // completions with echo: the prompt text, emitted first
  std::shared_ptr<const engine::PromptMedia> media;  // the prompt's images and videos; null for text
};

struct SessionOptions {
  ResponseKind kind = ResponseKind::kChat;
  bool stream = false;
  bool include_usage = false;
  std::string model_name;  // as the client asked for it
  std::vector<ChoiceSpec> choices;
  std::vector<int32_t> prompt_token_counts;       // one per distinct prompt, for usage
  std::shared_ptr<serving::Admission> admission;  // the request's place in the model's queue, held to the end
};

class GenerationSession : public std::enable_shared_from_this<GenerationSession> {
 public:
  static void start(std::shared_ptr<serving::ServedModel> model, SessionOptions options,
                    std::shared_ptr<Exchange> exchange);

 private:
  struct Choice {
    std::unique_ptr<ChoiceText> text;
    std::unique_ptr<serving::GenerationHandle> handle;
    std::string content, reasoning, full_text;
    std::vector<ToolCall> tool_calls;
    nlohmann::json logprobs = nlohmann::json::array();
    std::vector<serving::TokenLogprob> raw_logprobs;
    std::optional<std::string> finish_reason;
    bool sent_role = false;
    int32_t num_tokens = 0;
    int32_t num_cached_prompt_tokens = 0;  // for the prefix-cache counters
    int32_t num_tool_calls_sent = 0;
    size_t text_offset = 0;
  };

  GenerationSession(std::shared_ptr<serving::ServedModel> model, SessionOptions options,
                    std::shared_ptr<Exchange> exchange);
  void submit_all();
  void on_event(size_t index, serving::GenerationEvent event);
  // per_token: the event brought tokens whose chunk goes out even with an empty delta (see the .cpp).
  void emit_delta(size_t index, const TextDelta& delta, const std::vector<serving::TokenLogprob>& logprobs, bool final,
                  bool per_token);
  nlohmann::json logprobs_json(Choice& choice, const std::vector<serving::TokenLogprob>& logprobs);
  void finish_if_done();
  void abort_all();
  nlohmann::json usage_json() const;
  void send_json(const nlohmann::json& chunk);
  void fail(int status, const std::string& message);

  std::shared_ptr<serving::ServedModel> model_;
  SessionOptions options_;
  std::shared_ptr<Exchange> exchange_;
  std::string id_;
  int64_t created_ = 0;
  std::mutex mutex_;
  std::vector<Choice> choices_;
  bool finished_ = false;
  bool stream_started_ = false;
  std::string error_;
  std::chrono::steady_clock::time_point start_time_ = std::chrono::steady_clock::now();
  std::optional<std::chrono::steady_clock::time_point> first_token_time_;
  std::chrono::steady_clock::time_point last_token_time_;
  int32_t cached_prompt_tokens_ = 0;
};

std::string random_id(const std::string& prefix);

}  // namespace bm::daemon::openai
