#pragma once
// Prompts of an exact token count, chat template included, built as the original did: random text from 100
// common Chinese characters, lengthened or cut until the server's tokenizer counts exactly P tokens.
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace bm::daemon::bench {

class OpenAiClient;

// The token count of one user message holding `text`, after the chat template with the generation prompt.
using TokenCountFn = std::function<absl::StatusOr<int32_t>(const std::string& text)>;

// Counts with POST /tokenize {model, messages, add_generation_prompt: true} → {count}; servers without it
// (404/405) are asked instead for a 1-token completion whose usage.prompt_tokens is the count. With image_urls the
// message carries those images before the text, and the server counts their expanded tokens too.
TokenCountFn server_token_counter(const OpenAiClient& client, const std::string& model,
                                  std::vector<std::string> image_urls = {});

// The chat body of one benchmark request (stream, usage, ignore_eos, max_completion_tokens); image_urls become
// image_url parts ahead of the text part of the one user message.
std::string chat_request_body(const std::string& model, const std::string& text, int32_t max_completion_tokens,
                              const std::vector<std::string>& image_urls = {});

class PromptBuilder {
 public:
  PromptBuilder(TokenCountFn count, uint64_t seed) : count_(std::move(count)), rng_(seed) {}
  // A user text whose chat prompt is exactly num_tokens tokens; each call gives a different text.
  absl::StatusOr<std::string> build(int32_t num_tokens);
  // Whether a prompt of num_tokens can be built at all (the template and any images fit), without building one:
  // the sweep asks for every P before its first run.
  absl::Status check(int32_t num_tokens);
  // The image workload: every prompt also carries images worth `tokens` (their expanded pads and the
  // vision_start/end markers, as the server counts them), so the text is that much shorter. `what` names them in
  // the sentence for a P too short to hold them.
  void reserve_image_tokens(int32_t tokens, std::string what) {
    image_tokens_ = tokens;
    image_what_ = std::move(what);
  }

 private:
  std::string random_chars(int64_t n);
  TokenCountFn count_;
  std::mt19937_64 rng_;
  int32_t overhead_ = -1;  // tokens of the template around an empty message
  int32_t image_tokens_ = 0;
  std::string image_what_;
};

}  // namespace bm::daemon::bench
