#include "daemon/openai/request_preparation.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "daemon/openai/media_input.h"
#include "daemon/openai/request_body.h"
#include "daemon/openai/request_limits.h"
#include "daemon/openai/sampling_request.h"
#include "daemon/openai/structured_output.h"
#include "engine/template/chat_template.h"
#include "engine/template/value.h"
#include "engine/tokenizer/tokenizer.h"

namespace bm::daemon::openai {
namespace {

using json = RequestJson;

bool accepts_media(const serving::ServedModel& model) {
  return model.modality != "T";
}

// Whether the engine behind the model encodes media now; its sentence when not.
absl::Status engine_media_support(const serving::ServedModel& model) {
  if (model.generator == nullptr) return absl::FailedPreconditionError("the model has no engine loaded");
  return model.generator->media_support();
}

PadTokenIds pad_token_ids(const serving::ServedModel& model) {
  PadTokenIds pads;
  pads.image = model.tokenizer->token_to_id("<|image_pad|>").value_or(-1);
  pads.video = model.tokenizer->token_to_id("<|video_pad|>").value_or(-1);
  return pads;
}

// On a media model a pad token stands for an item's embeddings: one with no item (typed in a text chat or a
// completion prompt) would reach the engine as a run without a grid, so it is refused here.
std::optional<ApiError> refuse_stray_pads(const serving::ServedModel& model, const std::vector<int32_t>& ids,
                                          const std::string& param) {
  if (!accepts_media(model)) return std::nullopt;
  const PadTokenIds pads = pad_token_ids(model);
  for (int32_t id : ids)
    if (id >= 0 && (id == pads.image || id == pads.video))
      return ApiError{400,
                      absl::StrCat("the prompt holds a ", model.tokenizer->id_to_token(id),
                                   " token with no image or video for it; send media as image_url / video_url parts"),
                      param};
  return std::nullopt;
}

// Part types that carry media this server does not take in any form.
constexpr std::string_view kUnsupportedMediaTypes[] = {"input_audio", "audio_url", "image", "video", "image_embeds"};

// OpenAI content parts → what the model's template expects. A message of text parts only becomes one string
// (text-only templates read `content` as a string; parts joined with "\n", as vLLM does for "string"-format
// templates). A message with images or videos keeps its list, each part as vLLM hands "openai"-format templates
// ({"type": "text", "text": ...}, {"type": "image"}, {"type": "video"}), and its media parts are appended to
// `media` in order.
std::optional<ApiError> normalise_content(const serving::ServedModel& model, json& message, size_t index,
                                          std::vector<MediaPart>& media) {
  std::string param = absl::StrCat("messages[", index, "].content");
  auto it = message.find("content");
  if (it == message.end() || it->is_null() || it->is_string()) return std::nullopt;
  if (!it->is_array()) return ApiError{400, param + " must be a string, a list of content parts, or null", param};
  if (it->size() > kMaxContentParts)
    return ApiError{400, absl::StrCat(param, " may hold at most ", kMaxContentParts, " parts, got ", it->size()),
                    param};
  std::string joined;
  json parts = json::array();
  bool has_media = false;
  for (size_t p = 0; p < it->size(); ++p) {
    const json& part = (*it)[p];
    const std::string part_param = absl::StrCat(param, "[", p, "]");
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      return ApiError{400, param + ": every content part must be an object with a 'type'", param};
    std::string type = part["type"].get<std::string>();
    const engine::MediaKind* kind = media_part_kind(type);
    const bool unsupported = std::find(std::begin(kUnsupportedMediaTypes), std::end(kUnsupportedMediaTypes), type) !=
                             std::end(kUnsupportedMediaTypes);
    if (type == "text") {
      if (!part.contains("text") || !part["text"].is_string())
        return ApiError{400, param + ": a text part needs a string 'text'", param};
      joined += (joined.empty() ? "" : "\n") + part["text"].get<std::string>();
      parts.push_back(json{{"type", "text"}, {"text", part["text"]}});
    } else if (kind != nullptr || unsupported) {
      if (!accepts_media(model))
        return ApiError{400,
                        absl::StrCat("model '", model.name, "' accepts text only; ", param, " has a '", type, "' part"),
                        part_param};
      if (kind == nullptr)
        return ApiError{400,
                        absl::StrCat(part_param, ": '", type,
                                     "' parts are not supported; send images as 'image_url' and videos as "
                                     "'video_url' parts"),
                        part_param};
      std::variant<MediaPart, ApiError> read = read_media_part(part, *kind, part_param);
      if (auto* err = std::get_if<ApiError>(&read)) return *err;
      media.push_back(std::get<MediaPart>(std::move(read)));
      parts.push_back(template_part(*kind));
      has_media = true;
    } else {
      return ApiError{400, absl::StrCat(param, ": unknown content part type '", type, "'"), param};
    }
  }
  if (has_media)
    *it = std::move(parts);
  else
    *it = joined;
  return std::nullopt;
}

std::variant<json, ApiError> validate_messages(const serving::ServedModel& model, const json& body,
                                               std::vector<MediaPart>& media) {
  auto it = body.find("messages");
  if (it == body.end() || !it->is_array() || it->empty())
    return ApiError{400, "'messages' must be a non-empty list of messages", "messages"};
  if (it->size() > kMaxMessages)
    return ApiError{400, absl::StrCat("'messages' may hold at most ", kMaxMessages, " messages, got ", it->size()),
                    "messages"};
  json messages = *it;
  for (size_t i = 0; i < messages.size(); ++i) {
    json& m = messages[i];
    std::string param = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return ApiError{400, param + " must be an object", param};
    if (!m.contains("role") || !m["role"].is_string())
      return ApiError{400, param + ".role must be a string", param + ".role"};
    std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant" && role != "tool" && role != "developer")
      return ApiError{400, absl::StrCat(param, ".role '", role, "' is not one of system, user, assistant, tool"),
                      param + ".role"};
    if (role == "developer") m["role"] = "system";
    if (auto err = normalise_content(model, m, i, media)) return *err;
    if (auto calls = m.find("tool_calls"); calls != m.end() && !calls->is_null()) {
      if (!calls->is_array()) return ApiError{400, param + ".tool_calls must be a list", param + ".tool_calls"};
      for (json& call : *calls) {
        // Templates render arguments with tojson: give them the object, not the string OpenAI sends.
        if (call.is_object() && call.contains("function") && call["function"].is_object()) {
          json& fn = call["function"];
          if (fn.contains("arguments") && fn["arguments"].is_string()) {
            json parsed;
            if (parse_json_bounded(fn["arguments"].get<std::string>(), kMaxJsonDepth, parsed) == JsonParse::kOk)
              fn["arguments"] = std::move(parsed);
          }
        }
      }
    }
  }
  return messages;
}

struct ToolSelection {
  bool render_tools = false;
  bool parse_calls = false;
  std::string prefix;  // forced start of the assistant turn
};

std::variant<ToolSelection, ApiError> select_tools(const serving::ServedModel& model, const json& body) {
  ToolSelection sel;
  auto tools = body.find("tools");
  bool has_tools = tools != body.end() && !tools->is_null();
  if (has_tools) {
    if (!tools->is_array()) return ApiError{400, "'tools' must be a list of tool definitions", "tools"};
    if (tools->size() > kMaxTools)
      return ApiError{400, absl::StrCat("'tools' may hold at most ", kMaxTools, " tools, got ", tools->size()),
                      "tools"};
    for (const json& t : *tools) {
      if (!t.is_object() || t.value("type", "") != "function" || !t.contains("function") ||
          !t["function"].is_object() || !t["function"].contains("name") || !t["function"]["name"].is_string())
        return ApiError{
            400, "every tool must be {\"type\": \"function\", \"function\": {\"name\": ..., \"parameters\": ...}}",
            "tools"};
    }
    if (tools->empty()) has_tools = false;
  }
  if (auto p = body.find("parallel_tool_calls"); p != body.end() && !p->is_null() && !p->is_boolean())
    return ApiError{400, "'parallel_tool_calls' must be true or false", "parallel_tool_calls"};
  std::string choice = has_tools ? "auto" : "none";
  std::string named;
  if (auto tc = body.find("tool_choice"); tc != body.end() && !tc->is_null()) {
    if (tc->is_string()) {
      choice = tc->get<std::string>();
      if (choice != "none" && choice != "auto" && choice != "required")
        return ApiError{
            400,
            "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}",
            "tool_choice"};
    } else if (tc->is_object() && tc->contains("function") && (*tc)["function"].is_object() &&
               (*tc)["function"].contains("name") && (*tc)["function"]["name"].is_string()) {
      choice = "named";
      named = (*tc)["function"]["name"].get<std::string>();
    } else {
      return ApiError{
          400, "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}",
          "tool_choice"};
    }
  }
  if (choice == "none") return sel;
  if (!has_tools) return ApiError{400, "'tool_choice' " + choice + " needs a non-empty 'tools' list", "tool_choice"};
  if (model.tool_call_format != "hermes")
    return ApiError{400,
                    absl::StrCat("model '", model.name, "' has no tool-call format; send the request without 'tools'"),
                    "tools"};
  if (choice == "named") {
    bool found = false;
    for (const json& t : *tools) found |= t["function"]["name"] == named;
    if (!found) return ApiError{400, "'tool_choice' names '" + named + "', which is not in 'tools'", "tool_choice"};
    sel.prefix = "<tool_call>\n{\"name\": " + json(named).dump() + ", \"arguments\": ";
  } else if (choice == "required") {
    sel.prefix = "<tool_call>\n";
  }
  sel.render_tools = true;
  sel.parse_calls = true;
  return sel;
}

std::string max_len_message(int32_t max_model_len, int32_t prompt, int32_t completion, bool chat) {
  if (completion == 0)
    return absl::StrCat("This model's maximum context length is ", max_model_len, " tokens. However, your ",
                        chat ? "messages" : "prompt", " resulted in ", prompt,
                        " tokens. Please reduce the length of the ", chat ? "messages." : "prompt.");
  return absl::StrCat("This model's maximum context length is ", max_model_len, " tokens. However, you requested ",
                      prompt + completion, " tokens (", prompt, " in the ", chat ? "messages" : "prompt", ", ",
                      completion, " in the completion). Please reduce the length of the ", chat ? "messages" : "prompt",
                      " or completion.");
}

// Resolves sampling against the model defaults and the context limit for one prompt.
std::variant<serving::GenerationParams, ApiError> resolve_params(const serving::ServedModel& model,
                                                                 const SamplingRequest& req, int32_t prompt_len,
                                                                 bool chat) {
  int32_t max_len = model.generator->max_model_len();
  if (prompt_len >= max_len)
    return ApiError{400, max_len_message(max_len, prompt_len, 0, chat), chat ? "messages" : "prompt"};
  serving::GenerationParams p;
  p.max_tokens = req.max_tokens.value_or(max_len - prompt_len);
  if (prompt_len + p.max_tokens > max_len)
    return ApiError{400, max_len_message(max_len, prompt_len, p.max_tokens, chat), "max_tokens"};
  p.min_tokens = req.min_tokens;
  p.temperature = static_cast<float>(req.temperature.value_or(model.defaults.temperature));
  p.top_p = static_cast<float>(req.top_p.value_or(model.defaults.top_p));
  p.top_k = req.top_k.value_or(model.defaults.top_k);
  p.min_p = static_cast<float>(req.min_p);
  p.presence_penalty = static_cast<float>(req.presence_penalty);
  p.frequency_penalty = static_cast<float>(req.frequency_penalty);
  p.repetition_penalty = static_cast<float>(req.repetition_penalty.value_or(model.defaults.repetition_penalty));
  p.logit_bias.assign(req.logit_bias.begin(), req.logit_bias.end());
  p.seed = req.seed;
  p.stop_token_ids = req.stop_token_ids;
  p.ignore_eos = req.ignore_eos;
  p.logprobs = req.logprobs;
  return p;
}

// One request may not create more sequences than the engine runs at once: beyond that it would only wait in the
// queue that other clients share (vLLM bounds n by max_num_seqs the same way).
std::optional<ApiError> check_sequence_count(const serving::ServedModel& model, int32_t n, size_t num_prompts) {
  const int64_t sequences = static_cast<int64_t>(n) * static_cast<int64_t>(num_prompts);
  const int32_t max_seqs = model.generator->max_num_seqs();
  if (sequences <= max_seqs) return std::nullopt;
  return ApiError{400,
                  absl::StrCat("n × prompts = ", sequences, " sequences exceeds the ", max_seqs,
                               " this model runs at once (--max-num-seqs); send fewer choices or prompts"),
                  num_prompts > 1 ? "prompt" : "n"};
}

// The name the client addressed the model by (responses echo it); the API server has checked it is a string,
// but preparation does not rely on that.
std::string requested_name(const serving::ServedModel& model, const json& body) {
  auto it = body.find("model");
  return it != body.end() && it->is_string() ? it->get<std::string>() : model.name;
}

std::optional<uint64_t> choice_seed(const std::optional<uint64_t>& seed, int32_t choice) {
  // n samples of one seeded request differ from each other yet repeat exactly across runs.
  if (!seed) return std::nullopt;
  return *seed + static_cast<uint64_t>(choice) * 0x9E3779B97F4A7C15ull;
}

}  // namespace

std::variant<RenderedChat, ApiError> render_chat_prompt(const serving::ServedModel& model, const json& body,
                                                        bool include_tools, std::string* tool_prefix) {
  RenderedChat rendered;
  std::variant<json, ApiError> messages = validate_messages(model, body, rendered.media);
  if (auto* err = std::get_if<ApiError>(&messages)) return *err;
  ToolSelection tools;
  if (include_tools) {
    std::variant<ToolSelection, ApiError> sel = select_tools(model, body);
    if (auto* err = std::get_if<ApiError>(&sel)) return *err;
    tools = std::get<ToolSelection>(sel);
  }
  engine::ChatTemplate::Inputs inputs;
  absl::StatusOr<engine::Value> msgs = to_template_value(std::get<json>(messages));
  if (!msgs.ok()) return ApiError{400, absl::StrCat("'messages' holds ", msgs.status().message()), "messages"};
  inputs.messages = *std::move(msgs);
  if (tools.render_tools) {
    absl::StatusOr<engine::Value> t = to_template_value(body["tools"]);
    if (!t.ok()) return ApiError{400, absl::StrCat("'tools' holds ", t.status().message()), "tools"};
    inputs.tools = *std::move(t);
  }
  inputs.add_generation_prompt = true;
  if (auto it = body.find("add_generation_prompt"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) return ApiError{400, "'add_generation_prompt' must be a boolean", "add_generation_prompt"};
    inputs.add_generation_prompt = it->get<bool>();
  }
  if (auto it = body.find("chat_template_kwargs"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return ApiError{400, "'chat_template_kwargs' must be an object", "chat_template_kwargs"};
    absl::StatusOr<engine::Value> extra = to_template_value(*it);
    if (!extra.ok())
      return ApiError{400, absl::StrCat("'chat_template_kwargs' holds ", extra.status().message()),
                      "chat_template_kwargs"};
    inputs.extra = *std::move(extra);
  }
  absl::StatusOr<std::string> prompt = model.chat_template->render(inputs);
  if (!prompt.ok())
    return ApiError{400, absl::StrCat("the chat template rejected the messages: ", prompt.status().message()),
                    "messages"};
  if (tool_prefix) *tool_prefix = tools.prefix;
  rendered.text = *prompt + tools.prefix;
  return rendered;
}

std::variant<ChatPrompt, ApiError> prepare_chat_prompt(const serving::ServedModel& model, const json& body,
                                                       bool include_tools, std::string* tool_prefix,
                                                       bool add_special_tokens, bool for_generation) {
  // Checked whether or not the messages hold media, so a typo fails the same way on every request.
  serving::ProcessorKwargs kwargs = model.media.processor;
  if (auto it = body.find("mm_processor_kwargs"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return ApiError{400, "'mm_processor_kwargs' must be an object", "mm_processor_kwargs"};
    absl::StatusOr<serving::ProcessorKwargs> request =
        serving::parse_processor_kwargs(it->dump(), "'mm_processor_kwargs'");
    if (!request.ok()) return ApiError{400, std::string(request.status().message()), "mm_processor_kwargs"};
    kwargs = kwargs.merged_with(*request);
  }
  std::variant<RenderedChat, ApiError> rendered = render_chat_prompt(model, body, include_tools, tool_prefix);
  if (auto* err = std::get_if<ApiError>(&rendered)) return *err;
  ChatPrompt out;
  out.text = std::move(std::get<RenderedChat>(rendered).text);
  out.ids = model.tokenizer->encode(out.text, add_special_tokens);
  const std::vector<MediaPart>& parts = std::get<RenderedChat>(rendered).media;
  if (parts.empty()) {
    if (auto err = refuse_stray_pads(model, out.ids, "messages")) return *err;
    return out;
  }
  MediaBudget budget;
  budget.options = &model.media;
  budget.processor = model.processor_config.get();
  budget.kwargs = kwargs;
  budget.max_tokens = model.generator->max_model_len();
  std::variant<std::shared_ptr<engine::PromptMedia>, ApiError> media = load_media(parts, budget);
  if (auto* err = std::get_if<ApiError>(&media)) return *err;
  std::shared_ptr<engine::PromptMedia> loaded = std::get<std::shared_ptr<engine::PromptMedia>>(std::move(media));
  std::variant<std::vector<int32_t>, ApiError> expanded = expand_media_tokens(out.ids, *loaded, pad_token_ids(model));
  if (auto* err = std::get_if<ApiError>(&expanded)) return *err;
  out.ids = std::get<std::vector<int32_t>>(std::move(expanded));
  out.media = std::move(loaded);
  // Asked last, so bad input gets its own sentence whatever the engine can do, and /tokenize counts media
  // tokens even where the engine cannot encode them yet.
  if (for_generation)
    if (absl::Status support = engine_media_support(model); !support.ok())
      return ApiError{400, absl::StrCat("model '", model.name, "' cannot take images or videos: ", support.message()),
                      "messages"};
  return out;
}

// The request's structured-output grammar, compiled; with tool_choice required / named (a non-empty tool_prefix),
// the tool call's body constrained to the tools' parameter schemas. Null when the output is free.
// chat_reasoning: a chat whose rendered prompt opened the model's reasoning block: the constraint starts after it.
std::variant<std::shared_ptr<const engine::grammar::CompiledGrammar>, ApiError> request_grammar(
    const serving::ServedModel& model, const json& body, const std::string& tool_prefix, bool chat,
    bool chat_reasoning) {
  std::variant<std::optional<StructuredOutput>, ApiError> parsed = parse_structured_output(body);
  if (auto* err = std::get_if<ApiError>(&parsed)) return *err;
  std::optional<StructuredOutput> structured = std::get<std::optional<StructuredOutput>>(parsed);
  if (!tool_prefix.empty()) {
    if (structured)
      return ApiError{400,
                      absl::StrCat("'", structured->param,
                                   "' cannot be combined with tool_choice required or a named function, whose "
                                   "arguments are already constrained to the tool's parameters"),
                      structured->param};
    const json& choice = body["tool_choice"];
    const std::string named = choice.is_object() ? choice["function"]["name"].get<std::string>() : "";
    std::variant<engine::grammar::GrammarRequest, ApiError> tools =
        tool_call_grammar(body["tools"], named, body.value("parallel_tool_calls", true));
    if (auto* err = std::get_if<ApiError>(&tools)) return *err;
    structured = StructuredOutput{std::get<engine::grammar::GrammarRequest>(tools), "tools"};
  }
  if (!structured) return std::shared_ptr<const engine::grammar::CompiledGrammar>();
  if (chat && model.reasoning_format != "none") {
    // The reasoning parser splits at "</think>"; the grammar lets the model reason first when the template
    // opened the block, and cannot tell otherwise where the answer would begin.
    if (!chat_reasoning)
      return ApiError{400,
                      absl::StrCat("model '", model.name,
                                   "' reasons before it answers, and its prompt does not open "
                                   "the reasoning block, so structured output ('",
                                   structured->param, "') cannot tell where the answer begins"),
                      structured->param};
    structured->request.after_reasoning = true;
  }
  return compile_structured_output(model.tokenizer, structured->request, structured->param);
}

std::variant<SessionOptions, ApiError> prepare_chat(const serving::ServedModel& model, const json& body) {
  std::variant<SamplingRequest, ApiError> sampling =
      parse_sampling_request(body, Endpoint::kChat, model.tokenizer->vocab_size());
  if (auto* err = std::get_if<ApiError>(&sampling)) return *err;
  const SamplingRequest& req = std::get<SamplingRequest>(sampling);
  if (auto err = check_sequence_count(model, req.n, 1)) return *err;
  std::string tool_prefix;
  std::variant<ChatPrompt, ApiError> prompt =
      prepare_chat_prompt(model, body, /*include_tools=*/true, &tool_prefix, /*add_special_tokens=*/false,
                          /*for_generation=*/true);
  if (auto* err = std::get_if<ApiError>(&prompt)) return *err;
  const std::string& text = std::get<ChatPrompt>(prompt).text;
  const bool reasoning_opened =
      model.reasoning_format == "deepseek-r1" && ReasoningParser::prompt_opens_reasoning(text);
  auto grammar = request_grammar(model, body, tool_prefix, /*chat=*/true, reasoning_opened);
  if (auto* err = std::get_if<ApiError>(&grammar)) return *err;
  // The expanded ids: usage and the context check count every image and video token.
  const std::vector<int32_t>& ids = std::get<ChatPrompt>(prompt).ids;
  std::variant<serving::GenerationParams, ApiError> params =
      resolve_params(model, req, static_cast<int32_t>(ids.size()), true);
  if (auto* err = std::get_if<ApiError>(&params)) return *err;

  SessionOptions options;
  options.kind = ResponseKind::kChat;
  options.stream = req.stream;
  options.include_usage = req.include_usage;
  options.model_name = requested_name(model, body);
  options.prompt_token_counts = {static_cast<int32_t>(ids.size())};
  bool tools_requested =
      !tool_prefix.empty() || (body.contains("tools") && body["tools"].is_array() && !body["tools"].empty() &&
                               body.value("tool_choice", json("auto")) != json("none"));
  auto stops = std::make_shared<const StopStrings>(req.stop);
  for (int32_t i = 0; i < req.n; ++i) {
    ChoiceSpec spec;
    spec.prompt_ids = ids;
    spec.media = std::get<ChatPrompt>(prompt).media;
    spec.params = std::get<serving::GenerationParams>(params);
    spec.params.seed = choice_seed(req.seed, i);
    spec.params.grammar = std::get<0>(grammar);
    spec.text.skip_special_tokens = req.skip_special_tokens;
    spec.text.stop = stops;
    spec.text.split_reasoning = model.reasoning_format == "deepseek-r1";
    spec.text.starts_in_reasoning = spec.text.split_reasoning && ReasoningParser::prompt_opens_reasoning(text);
    spec.text.parse_tool_calls = tools_requested && model.tool_call_format == "hermes";
    spec.text.tool_call_prefix = tool_prefix;
    options.choices.push_back(std::move(spec));
  }
  return options;
}

std::variant<SessionOptions, ApiError> prepare_completion(const serving::ServedModel& model, const json& body) {
  std::variant<SamplingRequest, ApiError> sampling =
      parse_sampling_request(body, Endpoint::kCompletions, model.tokenizer->vocab_size());
  if (auto* err = std::get_if<ApiError>(&sampling)) return *err;
  const SamplingRequest& req = std::get<SamplingRequest>(sampling);
  if (body.contains("suffix") && !body["suffix"].is_null()) return ApiError{400, "'suffix' is not supported", "suffix"};
  auto grammar = request_grammar(model, body, /*tool_prefix=*/"", /*chat=*/false, /*chat_reasoning=*/false);
  if (auto* err = std::get_if<ApiError>(&grammar)) return *err;
  bool echo = false;
  if (auto it = body.find("echo"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) return ApiError{400, "'echo' must be a boolean", "echo"};
    echo = it->get<bool>();
  }
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) return ApiError{400, "'prompt' is required", "prompt"};
  // prompt: a string, a list of strings, a list of token ids, or a list of lists of token ids.
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> prompt_texts;
  int32_t vocab = model.tokenizer->vocab_size();
  auto read_ids = [&](const json& list) -> std::optional<std::vector<int32_t>> {
    std::vector<int32_t> ids;
    for (const json& id : list) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab) return std::nullopt;
      ids.push_back(id.get<int32_t>());
    }
    return ids;
  };
  const std::string bad_prompt = "'prompt' must be a string, a list of strings, or token ids";
  if (it->is_string()) {
    prompt_texts.push_back(it->get<std::string>());
  } else if (it->is_array() && !it->empty() && (*it)[0].is_string()) {
    for (const json& p : *it) {
      if (!p.is_string()) return ApiError{400, bad_prompt, "prompt"};
      prompt_texts.push_back(p.get<std::string>());
    }
  } else if (it->is_array() && !it->empty() && (*it)[0].is_array()) {
    for (const json& p : *it) {
      auto ids = p.is_array() ? read_ids(p) : std::nullopt;
      if (!ids || ids->empty())
        return ApiError{400, absl::StrCat("'prompt' token ids must be in [0, ", vocab, ")"), "prompt"};
      prompts.push_back(*ids);
    }
  } else if (it->is_array() && !it->empty()) {
    auto ids = read_ids(*it);
    if (!ids) return ApiError{400, absl::StrCat("'prompt' token ids must be in [0, ", vocab, ")"), "prompt"};
    prompts.push_back(*ids);
  } else {
    return ApiError{400, bad_prompt, "prompt"};
  }
  if (prompts.size() + prompt_texts.size() > kMaxPrompts)
    return ApiError{
        400,
        absl::StrCat("'prompt' may hold at most ", kMaxPrompts, " prompts, got ", prompts.size() + prompt_texts.size()),
        "prompt"};
  if (auto err = check_sequence_count(model, req.n, prompts.size() + prompt_texts.size())) return *err;
  for (const std::string& t : prompt_texts) prompts.push_back(model.tokenizer->encode(t, /*add_special_tokens=*/true));
  auto stops = std::make_shared<const StopStrings>(req.stop);

  SessionOptions options;
  options.kind = ResponseKind::kCompletion;
  options.stream = req.stream;
  options.include_usage = req.include_usage;
  options.model_name = requested_name(model, body);
  for (size_t p = 0; p < prompts.size(); ++p) {
    if (prompts[p].empty()) return ApiError{400, "'prompt' must not be empty", "prompt"};
    if (auto err = refuse_stray_pads(model, prompts[p], "prompt")) return *err;
    std::variant<serving::GenerationParams, ApiError> params =
        resolve_params(model, req, static_cast<int32_t>(prompts[p].size()), false);
    if (auto* err = std::get_if<ApiError>(&params)) return *err;
    options.prompt_token_counts.push_back(static_cast<int32_t>(prompts[p].size()));
    for (int32_t i = 0; i < req.n; ++i) {
      ChoiceSpec spec;
      spec.prompt_ids = prompts[p];
      spec.params = std::get<serving::GenerationParams>(params);
      spec.params.seed = choice_seed(req.seed, i);
      spec.params.grammar = std::get<0>(grammar);
      spec.text.skip_special_tokens = req.skip_special_tokens;
      spec.text.stop = stops;
      if (echo)
        spec.echo_prefix = p < prompt_texts.size() ? prompt_texts[p] : model.tokenizer->decode(prompts[p], false);
      options.choices.push_back(std::move(spec));
    }
  }
  return options;
}

}  // namespace bm::daemon::openai
