#include "daemon/openai/request_preparation.h"

#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/template/chat_template.h"

namespace bm::daemon::openai {
namespace {

// Prints what a template sees of tools, messages and chat_template_kwargs, as the Qwen templates do (tojson).
constexpr std::string_view kEchoTemplate =
    "{{ tools | tojson }}\n{% for m in messages %}{{ m | tojson }}\n{% endfor %}{{ opts | tojson }}";

std::unique_ptr<serving::ServedModel> echo_model() {
  auto model = std::make_unique<serving::ServedModel>();
  model->name = "echo";
  model->tool_call_format = "hermes";
  absl::StatusOr<engine::ChatTemplate> tmpl = engine::ChatTemplate::parse(kEchoTemplate);
  EXPECT_TRUE(tmpl.ok()) << tmpl.status();
  model->chat_template = std::make_shared<const engine::ChatTemplate>(*std::move(tmpl));
  return model;
}

// Tools, tool-call arguments (sent as a string, as the OpenAI SDK does) and chat_template_kwargs reach the
// template with the client's key order, so tojson writes what transformers' json.dumps writes for the same
// request. The expected text is Python's output for these dicts.
TEST(RequestPreparation, TemplateSeesTheClientsKeyOrder) {
  absl::StatusOr<RequestJson> body = parse_request_json(R"({
    "model": "echo",
    "messages": [{"role": "user", "content": "hi"},
                 {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                  "function": {"name": "get_weather", "arguments": "{\"unit\": \"c\", \"city\": \"Paris\"}"}}]}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather <now> & 'here'",
               "parameters": {"type": "object", "properties": {"unit": {"type": "string", "enum": ["c", "f"]},
                              "city": {"type": "string"}}, "required": ["city"]}, "strict": false}}],
    "chat_template_kwargs": {"opts": {"z": 1, "a": {"y": [], "b": {}}}}
  })");
  ASSERT_TRUE(body.ok()) << body.status();
  std::unique_ptr<serving::ServedModel> model = echo_model();
  std::variant<RenderedChat, ApiError> prompt = render_chat_prompt(*model, *body, /*include_tools=*/true, nullptr);
  ASSERT_TRUE(std::holds_alternative<RenderedChat>(prompt)) << std::get<ApiError>(prompt).message;
  EXPECT_EQ(std::get<RenderedChat>(prompt).text,
            "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather <now> & "
            "'here'\", \"parameters\": {\"type\": \"object\", \"properties\": {\"unit\": {\"type\": \"string\", "
            "\"enum\": [\"c\", \"f\"]}, \"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}, \"strict\": "
            "false}}]\n{\"role\": \"user\", \"content\": \"hi\"}\n{\"role\": \"assistant\", \"content\": null, "
            "\"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
            "\"arguments\": {\"unit\": \"c\", \"city\": \"Paris\"}}}]}\n{\"z\": 1, \"a\": {\"y\": [], \"b\": {}}}");
}

TEST(RequestPreparation, ValuesTheTemplateCannotHoldAreRefusedByName) {
  std::unique_ptr<serving::ServedModel> model = echo_model();
  absl::StatusOr<RequestJson> body = parse_request_json(
      R"({"model": "echo", "messages": [{"role": "user", "content": "hi"}],
          "chat_template_kwargs": {"opts": 18446744073709551615}})");
  ASSERT_TRUE(body.ok());
  std::variant<RenderedChat, ApiError> prompt = render_chat_prompt(*model, *body, /*include_tools=*/true, nullptr);
  ASSERT_TRUE(std::holds_alternative<ApiError>(prompt));
  EXPECT_EQ(std::get<ApiError>(prompt).param, "chat_template_kwargs");
  EXPECT_EQ(std::get<ApiError>(prompt).message,
            "'chat_template_kwargs' holds the integer 18446744073709551615, which does not fit in 64 bits");
}

}  // namespace
}  // namespace bm::daemon::openai
