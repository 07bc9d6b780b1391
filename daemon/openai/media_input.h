#pragma once
// The images and videos of a chat request (issue 19): image_url / video_url content parts read and checked,
// their bytes fetched under the served model's policy (media_source.h), decoded and preprocessed with bm_vision
// into an engine::PromptMedia, and the rendered prompt's <|image_pad|> / <|video_pad|> tokens expanded to each
// item's token count. Runs on the request-preparation workers (work_pool.h): decoding and resizing are CPU work.
// Every problem is an ApiError (400) with one sentence naming the part; nothing reaches the engine.
#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "daemon/openai/openai_error.h"
#include "daemon/openai/request_json.h"
#include "daemon/serving/media_options.h"
#include "engine/models/prompt_media.h"

namespace bm::engine::vision {
struct ProcessorConfig;
}

namespace bm::daemon::openai {

// One image_url / video_url part, read (not yet fetched).
struct MediaPart {
  engine::MediaKind kind = engine::MediaKind::kImage;
  std::string url;
  std::string param;  // where it was: "messages[1].content[2]"
};

// The part types that carry media, by OpenAI / vLLM name; null for any other type.
const engine::MediaKind* media_part_kind(const std::string& type);
// The part as the chat template sees it, as vLLM hands it to "openai"-format templates: {"type": "image"} or
// {"type": "video"} (the Qwen2.5-VL template renders <|vision_start|><|image_pad|><|vision_end|> for the first).
RequestJson template_part(engine::MediaKind kind);
// `{"type": "image_url", "image_url": {"url": "...", "detail": "auto"}}`, `{"type": "video_url", "video_url":
// {"url": "..."}}`: the object and a string url are required; detail, when present, is auto, low or high (and
// changes nothing: the processor's pixel bounds decide the size, as in vLLM).
std::variant<MediaPart, ApiError> read_media_part(const RequestJson& part, engine::MediaKind kind,
                                                  const std::string& param);

// What bounds the loading of one request's media.
struct MediaBudget {
  const serving::MediaOptions* options = nullptr;
  const engine::vision::ProcessorConfig* processor = nullptr;
  serving::ProcessorKwargs kwargs;  // the served ones merged with the request's mm_processor_kwargs
  int64_t max_tokens = 0;           // the context: the items' tokens together must stay below it
};

// Counts per kind against --limit-mm-per-prompt first, then fetches, decodes and preprocesses each part in order;
// the tokens of the items so far are checked against the budget before the next is decoded, so a request costs
// at most about one context of pixel values.
std::variant<std::shared_ptr<engine::PromptMedia>, ApiError> load_media(const std::vector<MediaPart>& parts,
                                                                        const MediaBudget& budget);

struct PadTokenIds {
  int32_t image = -1;
  int32_t video = -1;
};
// Each pad token of `ids` becomes item.num_tokens() copies, the n-th image pad taking the n-th image item (and so
// for videos). The number of pad tokens of each kind must equal the number of items of that kind: a pad typed in
// a message's text, or a template that does not render a part, is a 400 that says so. `media.items` are put in
// the order of their runs (a template could render parts in another order than the messages list them).
std::variant<std::vector<int32_t>, ApiError> expand_media_tokens(const std::vector<int32_t>& ids,
                                                                 engine::PromptMedia& media, PadTokenIds pads);

}  // namespace bm::daemon::openai
