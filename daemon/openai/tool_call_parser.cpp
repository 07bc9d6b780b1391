#include "daemon/openai/tool_call_parser.h"

#include <random>

#include <nlohmann/json.hpp>

#include "daemon/openai/request_json.h"
#include "engine/template/value.h"

namespace bm::daemon::openai {
namespace {

constexpr std::string_view kOpen = "<tool_call>";
constexpr std::string_view kClose = "</tool_call>";

size_t partial_tag_suffix(std::string_view text, std::string_view tag) {
  for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n)
    if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

}  // namespace

std::string make_tool_call_id() {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kChars[rng() % (sizeof kChars - 1)];
  return id;
}

ToolCallParser::ToolCallParser(std::string prefix) : pending_(std::move(prefix)) {}

bool ToolCallParser::emit_call(std::string_view json_text, ToolCallDelta& out) {
  absl::StatusOr<RequestJson> parsed = parse_request_json(json_text);
  if (!parsed.ok()) return false;
  const RequestJson& call = *parsed;
  if (!call.is_object() || !call.contains("name") || !call["name"].is_string()) return false;
  ToolCall tool;
  tool.name = call["name"].get<std::string>();
  // Some outputs name the field "parameters"; a missing one means no arguments.
  const RequestJson* args = call.contains("arguments")    ? &call["arguments"]
                            : call.contains("parameters") ? &call["parameters"]
                                                          : nullptr;
  if (args == nullptr) {
    tool.arguments = "{}";
  } else if (args->is_string()) {
    tool.arguments = args->get<std::string>();  // already serialised by the model
  } else {
    // vLLM's hermes parser returns json.dumps(arguments, ensure_ascii=False): the model's key order, Python's
    // separators. The template engine's Value writes exactly that; an integer beyond 64 bits (which it cannot
    // hold) falls back to nlohmann's compact form rather than losing the call.
    absl::StatusOr<engine::Value> value = to_template_value(*args);
    tool.arguments = value.ok() ? value->to_json() : args->dump(-1, ' ', /*ensure_ascii=*/false);
  }
  tool.id = make_tool_call_id();
  out.calls.push_back(std::move(tool));
  ++num_calls_;
  return true;
}

ToolCallDelta ToolCallParser::drain(bool at_end) {
  ToolCallDelta out;
  while (!pending_.empty()) {
    if (!inside_call_ && after_call_) {
      // Whitespace between consecutive calls is not content; decide once the next non-space text is seen.
      size_t next = pending_.find_first_not_of(" \t\r\n");
      if (next == std::string::npos) {
        if (at_end) pending_.clear();
        break;
      }
      std::string_view rest = std::string_view(pending_).substr(next);
      if (rest.substr(0, kOpen.size()) == kOpen) {
        pending_.erase(0, next);
      } else if (!at_end && rest.size() < kOpen.size() && kOpen.substr(0, rest.size()) == rest) {
        break;
      }
      after_call_ = false;
    }
    if (!inside_call_) {
      size_t open = pending_.find(kOpen);
      if (open == std::string::npos) {
        size_t hold = at_end ? 0 : partial_tag_suffix(pending_, kOpen);
        out.content += pending_.substr(0, pending_.size() - hold);
        pending_.erase(0, pending_.size() - hold);
        break;
      }
      out.content += pending_.substr(0, open);
      pending_.erase(0, open);
      inside_call_ = true;
    }
    size_t close = pending_.find(kClose);
    if (close == std::string::npos) {
      if (!at_end) break;  // wait for the rest of the call
      // The output ended inside a call (e.g. max_tokens): keep it if its JSON is complete, else it is content.
      std::string_view body = std::string_view(pending_).substr(kOpen.size());
      if (!emit_call(body, out)) out.content += pending_;
      pending_.clear();
      inside_call_ = false;
      break;
    }
    std::string_view body = std::string_view(pending_).substr(kOpen.size(), close - kOpen.size());
    if (!emit_call(body, out)) out.content += pending_.substr(0, close + kClose.size());
    pending_.erase(0, close + kClose.size());
    inside_call_ = false;
    after_call_ = num_calls_ > 0;
  }
  // Trailing whitespace after the last call carries nothing.
  if (at_end && num_calls_ > 0 && out.content.find_first_not_of(" \t\r\n") == std::string::npos) out.content.clear();
  return out;
}

ToolCallDelta ToolCallParser::push(std::string_view text) {
  pending_.append(text);
  return drain(/*at_end=*/false);
}

ToolCallDelta ToolCallParser::finish() {
  return drain(/*at_end=*/true);
}

ToolCallDelta ToolCallParser::parse_all(std::string_view text) {
  ToolCallParser parser;
  ToolCallDelta out = parser.push(text);
  ToolCallDelta rest = parser.finish();
  out.content += rest.content;
  for (ToolCall& c : rest.calls) out.calls.push_back(std::move(c));
  if (!out.calls.empty() && out.content.find_first_not_of(" \t\r\n") == std::string::npos) out.content.clear();
  return out;
}

}  // namespace bm::daemon::openai
