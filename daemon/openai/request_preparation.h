#pragma once
// Turns a /v1/chat/completions or /v1/completions body into what a GenerationSession runs: messages rendered
// through the chat template, prompts tokenised, lengths checked against the context, sampling resolved
// against the model's defaults. Every problem is an ApiError naming the parameter.
#include <string>
#include <variant>

#include "daemon/openai/generation_session.h"
#include "daemon/openai/media_input.h"
#include "daemon/openai/openai_error.h"
#include "daemon/openai/request_json.h"
#include "daemon/serving/served_model.h"

namespace bm::daemon::openai {

std::variant<SessionOptions, ApiError> prepare_chat(const serving::ServedModel& model, const RequestJson& body);
std::variant<SessionOptions, ApiError> prepare_completion(const serving::ServedModel& model, const RequestJson& body);

// The messages rendered through the chat template, and their image_url / video_url parts in order (not fetched).
struct RenderedChat {
  std::string text;
  std::vector<MediaPart> media;
};
std::variant<RenderedChat, ApiError> render_chat_prompt(const serving::ServedModel& model, const RequestJson& body,
                                                        bool include_tools, std::string* tool_prefix);

// A chat's prompt as the engine takes it, for chat completions and /tokenize alike: rendered, tokenised, its media
// loaded (media_input.h) and each pad token expanded to its item's tokens; media is null for a text chat.
// for_generation: media also needs the engine's media_support() (a 400 with its sentence otherwise); /tokenize
// only counts, so it does not.
struct ChatPrompt {
  std::string text;
  std::vector<int32_t> ids;
  std::shared_ptr<const engine::PromptMedia> media;
};
std::variant<ChatPrompt, ApiError> prepare_chat_prompt(const serving::ServedModel& model, const RequestJson& body,
                                                       bool include_tools, std::string* tool_prefix,
                                                       bool add_special_tokens, bool for_generation);

}  // namespace bm::daemon::openai
