#include "engine/template/chat_template.h"

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "engine/template/parser.h"
#include "engine/template/string_methods.h"

namespace bm::engine {
namespace {

// transformers' SPECIAL_TOKENS_ATTRIBUTES: the names passed to every template render.
constexpr const char* kSpecialTokenNames[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                              "pad_token", "cls_token", "mask_token"};

absl::StatusOr<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(str_cat("cannot open ", path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<Value> read_json(const std::filesystem::path& path) {
  auto text = read_file(path);
  if (!text.ok()) return text.status();
  auto v = Value::from_json(*text);
  if (!v.ok()) return absl::InvalidArgumentError(str_cat(path.string(), ": ", v.status().message()));
  return v;
}

// `chat_template` may be a string or a list of {"name", "template"}; the unnamed use picks "default".
absl::StatusOr<std::string> template_text(const Value& field, const std::filesystem::path& path) {
  if (field.is_string()) return field.as_string();
  if (field.is_array()) {
    for (const auto& entry : field.items()) {
      const Value* name = entry.find("name");
      const Value* text = entry.find("template");
      if (name != nullptr && name->is_string() && name->as_string() == "default" && text != nullptr &&
          text->is_string()) {
        return text->as_string();
      }
    }
    return absl::InvalidArgumentError(
        str_cat(path.string(), ": chat_template is a list without a template named \"default\""));
  }
  return absl::InvalidArgumentError(str_cat(path.string(), ": chat_template is not a string"));
}

// A special token is a string or an AddedToken object {"content": ...}.
const Value* token_content(const Value& v) {
  if (v.is_string()) return &v;
  if (v.is_object()) {
    const Value* content = v.find("content");
    if (content != nullptr && content->is_string()) return content;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::parse(std::string_view source) {
  auto body = parse_template(source);
  if (!body.ok()) return body.status();
  ChatTemplate t;
  t.source_ = std::string(source);
  t.body_ = std::make_shared<const Body>(*std::move(body));
  return t;
}

absl::StatusOr<ChatTemplate> ChatTemplate::load(const std::filesystem::path& model_dir) {
  const auto jinja_path = model_dir / "chat_template.jinja";
  const auto json_path = model_dir / "chat_template.json";
  const auto config_path = model_dir / "tokenizer_config.json";
  std::error_code ec;
  Value config;
  if (std::filesystem::exists(config_path, ec)) {
    auto c = read_json(config_path);
    if (!c.ok()) return c.status();
    config = *std::move(c);
  }
  std::string source;
  std::filesystem::path origin;
  if (std::filesystem::exists(jinja_path, ec)) {
    auto text = read_file(jinja_path);
    if (!text.ok()) return text.status();
    source = *std::move(text);
    origin = jinja_path;
  } else if (std::filesystem::exists(json_path, ec)) {
    auto j = read_json(json_path);
    if (!j.ok()) return j.status();
    const Value* field = j->find("chat_template");
    if (field == nullptr) return absl::InvalidArgumentError(str_cat(json_path.string(), " has no chat_template"));
    auto text = template_text(*field, json_path);
    if (!text.ok()) return text.status();
    source = *std::move(text);
    origin = json_path;
  } else if (const Value* field = config.find("chat_template"); field != nullptr) {
    auto text = template_text(*field, config_path);
    if (!text.ok()) return text.status();
    source = *std::move(text);
    origin = config_path;
  } else {
    return absl::NotFoundError(str_cat("no chat template in ", model_dir.string(),
                                       " (looked for chat_template.jinja, chat_template.json and "
                                       "tokenizer_config.json's chat_template)"));
  }
  auto parsed = parse(source);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(), str_cat(origin.string(), ": ", parsed.status().message()));
  }
  for (const char* name : kSpecialTokenNames) {
    const Value* v = config.find(name);
    if (v == nullptr) continue;
    if (const Value* content = token_content(*v); content != nullptr) parsed->set_variable(name, *content);
  }
  return parsed;
}

void ChatTemplate::set_variable(std::string name, Value value) {
  for (auto& [k, v] : variables_) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  variables_.emplace_back(std::move(name), std::move(value));
}

absl::StatusOr<std::string> ChatTemplate::render(const Inputs& inputs) const {
  if (!body_) return absl::FailedPreconditionError("chat template was not parsed");
  std::vector<std::pair<std::string, Value>> globals = variables_;
  globals.emplace_back("messages", inputs.messages);
  globals.emplace_back("tools", inputs.tools.is_undefined() ? Value::none() : inputs.tools);
  globals.emplace_back("documents", Value::none());
  globals.emplace_back("add_generation_prompt", Value::boolean(inputs.add_generation_prompt));
  if (!inputs.extra.is_undefined() && !inputs.extra.is_none()) {
    if (!inputs.extra.is_object()) return absl::InvalidArgumentError("chat template extra variables must be an object");
    for (const auto& entry : inputs.extra.entries()) globals.push_back(entry);
  }
  Interpreter interpreter(limits_);
  return interpreter.render(*body_, std::move(globals));
}

}  // namespace bm::engine
