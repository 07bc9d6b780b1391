#pragma once
// Turns a /v1/chat/completions or /v1/completions body into what a GenerationSession runs: messages rendered
// through the chat template, prompts tokenised, lengths checked against the context, sampling resolved
// against the model's defaults. Every problem is an ApiError naming the parameter.
#include <string>
#include <variant>

#include "daemon/openai/generation_session.h"
#include "daemon/openai/openai_error.h"
#include "daemon/openai/request_json.h"
#include "daemon/serving/served_model.h"

namespace bm::daemon::openai {

std::variant<SessionOptions, ApiError> prepare_chat(const serving::ServedModel& model, const RequestJson& body);
std::variant<SessionOptions, ApiError> prepare_completion(const serving::ServedModel& model, const RequestJson& body);

// Renders messages for /tokenize and for chat; returns the prompt text.
std::variant<std::string, ApiError> render_chat_prompt(const serving::ServedModel& model, const RequestJson& body,
                                                       bool include_tools, std::string* tool_prefix);

}  // namespace bm::daemon::openai
