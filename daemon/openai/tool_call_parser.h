#pragma once
// Hermes-format tool calls (qwen2.5, qwen2.5-coder, qwq): `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`.
// Incremental: content streams through until a call may begin; a call is emitted once its closing tag (or the
// end of the output) arrives and its JSON is valid. Text that is not a valid call stays content.
#include <string>
#include <string_view>
#include <vector>

namespace bm::daemon::openai {

struct ToolCall {
  std::string id;  // "call_" + 24 random alphanumerics
  std::string name;
  std::string arguments;  // a JSON object, serialised (OpenAI sends arguments as a string)
};

struct ToolCallDelta {
  std::string content;
  std::vector<ToolCall> calls;
};

class ToolCallParser {
 public:
  // `prefix` is text the server already put into the assistant turn (tool_choice required/named), which the
  // model continues; it is parsed as if the model had written it.
  explicit ToolCallParser(std::string prefix = {});
  ToolCallDelta push(std::string_view text);
  ToolCallDelta finish();
  int num_calls() const { return num_calls_; }

  // Parses a complete output at once (non-streaming responses).
  static ToolCallDelta parse_all(std::string_view text);

 private:
  ToolCallDelta drain(bool at_end);
  bool emit_call(std::string_view json, ToolCallDelta& out);

  std::string pending_;
  bool inside_call_ = false;
  bool after_call_ = false;
  int num_calls_ = 0;
};

std::string make_tool_call_id();

}  // namespace bm::daemon::openai
