#pragma once
// The text of one choice as tokens arrive: incremental detokenization (UTF-8 safe) → stop strings (held back
// while they may still match) → reasoning split (<think>) → tool calls (<tool_call>). Each stage holds back only
// what it must, so streamed deltas concatenate to exactly the non-streamed result.
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "daemon/openai/reasoning_parser.h"
#include "daemon/openai/stop_matcher.h"
#include "daemon/openai/tool_call_parser.h"

namespace bm::engine {
class Tokenizer;
class IncrementalDetokenizer;
}  // namespace bm::engine

namespace bm::daemon::openai {

struct ChoiceTextOptions {
  bool skip_special_tokens = true;
  std::shared_ptr<const StopStrings> stop;  // shared by every choice of a request; null: none
  bool split_reasoning = false;             // deepseek-r1 format
  bool starts_in_reasoning = false;         // the prompt left <think> open
  bool parse_tool_calls = false;            // hermes format with tools in the request
  std::string tool_call_prefix;             // text the server placed in the assistant turn (tool_choice required/named)
};

struct TextDelta {
  std::string text;  // everything (after stop strings), for completions and logprob offsets
  std::string content;
  std::string reasoning;
  std::vector<ToolCall> tool_calls;
  bool empty() const { return content.empty() && reasoning.empty() && tool_calls.empty(); }
};

class ChoiceText {
 public:
  ChoiceText(const engine::Tokenizer& tokenizer, ChoiceTextOptions options);
  ~ChoiceText();
  TextDelta push(std::span<const int32_t> token_ids);
  TextDelta finish();
  bool stopped() const { return stopped_; }  // a stop string matched: generation should end
  int num_tool_calls() const { return tools_ ? tools_->num_calls() : 0; }
  bool parses_tool_calls() const { return tools_ != nullptr; }

 private:
  TextDelta route(std::string text, bool at_end);

  ChoiceTextOptions options_;
  std::unique_ptr<engine::IncrementalDetokenizer> detokenizer_;
  StopMatcher stop_;
  std::unique_ptr<ReasoningParser> reasoning_;
  std::unique_ptr<ToolCallParser> tools_;
  bool stopped_ = false;
  bool finished_ = false;
};

}  // namespace bm::daemon::openai
