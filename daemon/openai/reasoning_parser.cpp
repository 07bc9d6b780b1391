#include "daemon/openai/reasoning_parser.h"

namespace bm::daemon::openai {
namespace {

constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

// Length of the longest suffix of `text` that is a proper prefix of `tag`.
size_t partial_tag_suffix(std::string_view text, std::string_view tag) {
  for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n)
    if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

}  // namespace

ReasoningParser::ReasoningParser(bool starts_in_reasoning)
    : state_(starts_in_reasoning ? State::kReasoning : State::kStart) {}

bool ReasoningParser::prompt_opens_reasoning(std::string_view prompt) {
  size_t open = prompt.rfind(kOpen);
  if (open == std::string_view::npos) return false;
  return prompt.find(kClose, open) == std::string_view::npos;
}

ReasoningDelta ReasoningParser::push(std::string_view text) {
  ReasoningDelta out;
  pending_.append(text);
  while (!pending_.empty()) {
    switch (state_) {
      case State::kStart: {
        // Leading whitespace before an opening tag is not content yet.
        size_t first = pending_.find_first_not_of(" \t\r\n");
        if (first == std::string::npos) return out;
        std::string_view rest = std::string_view(pending_).substr(first);
        if (rest.size() < kOpen.size() && kOpen.substr(0, rest.size()) == rest) return out;  // undecided
        if (rest.substr(0, kOpen.size()) == kOpen) {
          pending_.erase(0, first + kOpen.size());
          state_ = State::kReasoning;
          strip_leading_newline_ = true;
        } else {
          state_ = State::kContent;
        }
        break;
      }
      case State::kReasoning: {
        if (strip_leading_newline_ && !pending_.empty()) {
          if (pending_.front() == '\n') pending_.erase(0, 1);
          strip_leading_newline_ = false;
          continue;
        }
        size_t close = pending_.find(kClose);
        if (close != std::string::npos) {
          out.reasoning += pending_.substr(0, close);
          pending_.erase(0, close + kClose.size());
          state_ = State::kContent;
          skip_newlines_ = true;  // the template puts "\n\n" after </think>; content starts after it
          break;
        }
        size_t hold = partial_tag_suffix(pending_, kClose);
        out.reasoning += pending_.substr(0, pending_.size() - hold);
        pending_.erase(0, pending_.size() - hold);
        return out;
      }
      case State::kContent:
        if (skip_newlines_) {
          size_t skip = pending_.find_first_not_of('\n');
          if (skip == std::string::npos) {
            pending_.clear();
            return out;
          }
          pending_.erase(0, skip);
          skip_newlines_ = false;
        }
        out.content += pending_;
        pending_.clear();
        return out;
    }
  }
  return out;
}

ReasoningDelta ReasoningParser::finish() {
  ReasoningDelta out;
  if (state_ == State::kReasoning) {
    out.reasoning = std::move(pending_);
  } else {
    out.content = std::move(pending_);
  }
  pending_.clear();
  return out;
}

}  // namespace bm::daemon::openai
