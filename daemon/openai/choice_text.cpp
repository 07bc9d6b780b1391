#include "daemon/openai/choice_text.h"

#include "engine/tokenizer/incremental_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace bm::daemon::openai {

ChoiceText::ChoiceText(const engine::Tokenizer& tokenizer, ChoiceTextOptions options)
    : options_(std::move(options)),
      detokenizer_(std::make_unique<engine::IncrementalDetokenizer>(tokenizer, options_.skip_special_tokens)),
      stop_(options_.stop ? options_.stop : std::make_shared<const StopStrings>(std::vector<std::string>{})) {
  if (options_.split_reasoning) reasoning_ = std::make_unique<ReasoningParser>(options_.starts_in_reasoning);
  if (options_.parse_tool_calls) tools_ = std::make_unique<ToolCallParser>(options_.tool_call_prefix);
}

ChoiceText::~ChoiceText() = default;

TextDelta ChoiceText::route(std::string text, bool at_end) {
  TextDelta out;
  out.text = text;
  std::string content;
  if (reasoning_) {
    ReasoningDelta r = reasoning_->push(text);
    if (at_end) {
      ReasoningDelta rest = reasoning_->finish();
      r.reasoning += rest.reasoning;
      r.content += rest.content;
    }
    out.reasoning = std::move(r.reasoning);
    content = std::move(r.content);
  } else {
    content = std::move(text);
  }
  if (tools_) {
    ToolCallDelta t = tools_->push(content);
    if (at_end) {
      ToolCallDelta rest = tools_->finish();
      t.content += rest.content;
      for (ToolCall& c : rest.calls) t.calls.push_back(std::move(c));
    }
    out.content = std::move(t.content);
    out.tool_calls = std::move(t.calls);
  } else {
    out.content = std::move(content);
  }
  return out;
}

TextDelta ChoiceText::push(std::span<const int32_t> token_ids) {
  if (stopped_ || finished_) return {};
  std::string text;
  for (int32_t id : token_ids) text += detokenizer_->push(id);
  StopMatcher::Result r = stop_.push(text);
  if (r.stopped) {
    stopped_ = true;
    finished_ = true;
    return route(std::move(r.text), /*at_end=*/true);
  }
  return route(std::move(r.text), /*at_end=*/false);
}

TextDelta ChoiceText::finish() {
  if (finished_) return {};
  finished_ = true;
  StopMatcher::Result r = stop_.push(detokenizer_->flush());
  if (r.stopped) {
    stopped_ = true;
    return route(std::move(r.text), true);
  }
  return route(r.text + stop_.finish(), true);
}

}  // namespace bm::daemon::openai
