#pragma once
// Splits deepseek-r1-format output (qwq, deepseek-r1-distill) into reasoning and content at <think>…</think>,
// incrementally. The distills' template ends the prompt with "<think>\n", so the model often emits only the
// closing tag: a parser that waits for the opening tag would put all reasoning into content (vLLM #13125).
// Rule: when the rendered prompt ends inside <think>, start in reasoning mode.
#include <string>
#include <string_view>

namespace bm::daemon::openai {

struct ReasoningDelta {
  std::string reasoning;
  std::string content;
};

class ReasoningParser {
 public:
  explicit ReasoningParser(bool starts_in_reasoning);
  // Text that might be the start of a tag is held back until it can be decided.
  ReasoningDelta push(std::string_view text);
  ReasoningDelta finish();

  // True when the rendered prompt leaves the model inside an open <think> block.
  static bool prompt_opens_reasoning(std::string_view prompt);

 private:
  enum class State { kStart, kReasoning, kContent };
  State state_;
  std::string pending_;
  bool strip_leading_newline_ = false;
  bool skip_newlines_ = false;
};

}  // namespace bm::daemon::openai
