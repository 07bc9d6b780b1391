#pragma once
// A model's chat template: turns OpenAI-style messages into the prompt text exactly as transformers'
// apply_chat_template would (jinja2 with trim_blocks/lstrip_blocks, HF's tojson, raise_exception,
// strftime_now, the tokenizer's special tokens as variables).
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/template/ast.h"
#include "engine/template/interpreter.h"
#include "engine/template/value.h"

namespace bm::engine {

class ChatTemplate {
 public:
  // Load errors name the line and the construct ("chat template line 3: unsupported construct '{% include
  // %}'").
  static absl::StatusOr<ChatTemplate> parse(std::string_view source);
  // Reads the template from model_dir/chat_template.jinja, else chat_template.json, else
  // tokenizer_config.json (a list of named templates picks "default"), plus the special token strings
  // (bos_token, eos_token, ...) from tokenizer_config.json.
  static absl::StatusOr<ChatTemplate> load(const std::filesystem::path& model_dir);

  struct Inputs {
    Value messages;  // list of message objects
    Value tools;     // list of JSON-schema tool objects; undefined or none = no tools
    bool add_generation_prompt = true;
    Value extra;  // object of extra context variables (e.g. add_vision_id, enable_thinking)
  };
  // raise_exception("...") in the template becomes an InvalidArgumentError carrying exactly its message.
  // Const and safe to call from several threads at once (each render has its own interpreter state).
  absl::StatusOr<std::string> render(const Inputs& inputs) const;

  const std::string& source() const { return source_; }
  // Variables every render sees, like bos_token (transformers passes the tokenizer's special tokens).
  void set_variable(std::string name, Value value);
  const std::vector<std::pair<std::string, Value>>& variables() const { return variables_; }
  void set_limits(const RenderLimits& limits) { limits_ = limits; }

 private:
  std::string source_;
  std::shared_ptr<const Body> body_;
  std::vector<std::pair<std::string, Value>> variables_;
  RenderLimits limits_;
};

}  // namespace bm::engine
