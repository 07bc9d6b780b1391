// libFuzzer target for the chat-template engine: arbitrary template text, optionally followed by a NUL byte
// and a JSON object {"messages": [...], "tools": [...], ...} of render inputs. Any input must end in a
// rendered string or a clean error: no crash, hang, leak or sanitizer report. Tight limits keep each run
// short.
//
//   template_fuzz -max_total_time=60 -max_len=8192 <corpus dir> /path/to/shared/models/templates
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/template/chat_template.h"

namespace {

bm::engine::Value default_messages() {
  static const bm::engine::Value kMessages = *bm::engine::Value::from_json(R"([
    {"role": "system", "content": "sys"},
    {"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "look"}]},
    {"role": "assistant", "content": null, "tool_calls": [
      {"type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
    {"role": "tool", "content": "42"},
    {"role": "assistant", "content": "<think>\nhm\n</think>\n\nok"},
    {"role": "user", "content": "again"}])");
  return kMessages;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t split = input.find('\0');
  auto tmpl = bm::engine::ChatTemplate::parse(input.substr(0, split));
  if (!tmpl.ok()) return 0;
  bm::engine::RenderLimits limits;
  limits.max_steps = 200'000;
  limits.max_output_bytes = 1 << 20;
  limits.max_value_weight = 4 << 20;
  limits.max_call_depth = 32;
  tmpl->set_limits(limits);
  tmpl->set_variable("bos_token", bm::engine::Value::string("<s>"));

  bm::engine::ChatTemplate::Inputs inputs;
  inputs.messages = default_messages();
  if (split != std::string_view::npos) {
    auto context = bm::engine::Value::from_json(input.substr(split + 1));
    if (context.ok() && context->is_object()) {
      if (const auto* messages = context->find("messages")) inputs.messages = *messages;
      if (const auto* tools = context->find("tools")) inputs.tools = *tools;
      inputs.extra = *context;
    }
  }
  for (bool generation_prompt : {true, false}) {
    inputs.add_generation_prompt = generation_prompt;
    auto out = tmpl->render(inputs);
    if (out.ok() && out->size() > limits.max_output_bytes) __builtin_trap();  // the limit must hold
  }
  return 0;
}
