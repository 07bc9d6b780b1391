#include "daemon/bench/prompt_builder.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "daemon/bench/openai_client.h"

namespace bm::daemon::bench {
namespace {

using json = nlohmann::json;

// 100 frequent characters; each is 3 bytes in UTF-8, which is what cutting the tail relies on.
constexpr const char* kWords =
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自可么里后小之心多天而能好都"
    "然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外";
constexpr size_t kCharBytes = 3;
constexpr int kMaxAdjustments = 200;

json user_messages(const std::string& text, const std::vector<std::string>& image_urls) {
  if (image_urls.empty()) return json::array({{{"role", "user"}, {"content", text}}});
  // Images first, then the text: the order of vLLM's multimodal benchmark datasets and of the Qwen2.5-VL examples.
  json parts = json::array();
  for (const std::string& url : image_urls) parts.push_back({{"type", "image_url"}, {"image_url", {{"url", url}}}});
  parts.push_back({{"type", "text"}, {"text", text}});
  return json::array({{{"role", "user"}, {"content", parts}}});
}

}  // namespace

TokenCountFn server_token_counter(const OpenAiClient& client, const std::string& model,
                                  std::vector<std::string> image_urls) {
  return [&client, model, image_urls = std::move(image_urls)](const std::string& text) -> absl::StatusOr<int32_t> {
    json body = {{"model", model}, {"messages", user_messages(text, image_urls)}, {"add_generation_prompt", true}};
    absl::StatusOr<HttpReply> reply = client.post_json("/tokenize", body.dump());
    if (!reply.ok()) return reply.status();
    if (reply->status == 200) {
      json j = json::parse(reply->body, nullptr, false);
      if (!j.is_discarded() && j.contains("count") && j["count"].is_number_integer()) return j["count"].get<int32_t>();
      return absl::FailedPreconditionError(absl::StrCat(client.base_url(), "/tokenize answered without a 'count'"));
    }
    if (reply->status != 404 && reply->status != 405)
      return absl::FailedPreconditionError(absl::StrCat(client.base_url(), "/tokenize failed with HTTP ", reply->status,
                                                        ": ", reply->body.substr(0, 200)));
    // No /tokenize: the server's own usage report counts the same tokens.
    json chat = {{"model", model}, {"messages", user_messages(text, image_urls)}, {"max_tokens", 1}, {"stream", false}};
    reply = client.post_json("/v1/chat/completions", chat.dump());
    if (!reply.ok()) return reply.status();
    json j = json::parse(reply->body, nullptr, false);
    if (reply->status != 200 || j.is_discarded() || !j.contains("usage") || !j["usage"].contains("prompt_tokens"))
      return absl::FailedPreconditionError(
          absl::StrCat(client.base_url(),
                       " has no /tokenize and its chat completions report no usage.prompt_tokens, so prompts of "
                       "an exact length cannot be built (HTTP ",
                       reply->status, ")"));
    return j["usage"]["prompt_tokens"].get<int32_t>();
  };
}

std::string chat_request_body(const std::string& model, const std::string& text, int32_t max_completion_tokens,
                              const std::vector<std::string>& image_urls) {
  json body = {{"model", model},
               {"messages", user_messages(text, image_urls)},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}},
               {"max_completion_tokens", max_completion_tokens},
               {"ignore_eos", true}};
  return body.dump();
}

std::string PromptBuilder::random_chars(int64_t n) {
  std::string out;
  std::uniform_int_distribution<size_t> pick(0, std::char_traits<char>::length(kWords) / kCharBytes - 1);
  for (int64_t i = 0; i < n; ++i) out.append(kWords + pick(rng_) * kCharBytes, kCharBytes);
  return out;
}

absl::Status PromptBuilder::check(int32_t num_tokens) {
  if (overhead_ < 0) {
    absl::StatusOr<int32_t> empty = count_("");
    if (!empty.ok()) return empty.status();
    overhead_ = *empty;
  }
  if (image_tokens_ > 0 && num_tokens < overhead_ + image_tokens_)
    return absl::InvalidArgumentError(
        absl::StrCat("a prompt of ", num_tokens, " tokens is shorter than the chat template (", overhead_,
                     " tokens) and ", image_what_, " (", image_tokens_, " tokens) together"));
  if (num_tokens < overhead_)
    return absl::InvalidArgumentError(absl::StrCat(
        "a prompt of ", num_tokens, " tokens is shorter than the chat template alone (", overhead_, " tokens)"));
  return absl::OkStatus();
}

absl::StatusOr<std::string> PromptBuilder::build(int32_t num_tokens) {
  if (absl::Status s = check(num_tokens); !s.ok()) return s;
  // The text is counted without the images (each count would otherwise send and preprocess them again); the images
  // add a fixed number of tokens, which every request's usage then confirms (check_lengths).
  num_tokens -= image_tokens_;
  std::string text = random_chars(num_tokens - overhead_);
  for (int i = 0; i < kMaxAdjustments; ++i) {
    absl::StatusOr<int32_t> n = count_(text);
    if (!n.ok()) return n.status();
    if (*n == num_tokens) return text;
    if (*n < num_tokens) {
      text += random_chars(num_tokens - *n);
    } else {
      size_t cut = std::min(text.size(), static_cast<size_t>(*n - num_tokens) * kCharBytes);
      if (cut == 0) break;
      text.erase(text.size() - cut);
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("could not build a prompt of exactly ", num_tokens, " tokens (the tokenizer never counted it)"));
}

}  // namespace bm::daemon::bench
