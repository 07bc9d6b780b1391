#include "daemon/openai/media_input.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "daemon/openai/media_source.h"
#include "daemon/openai/request_limits.h"
#include "engine/vision/image_decoder.h"
#include "engine/vision/image_processor.h"
#include "engine/vision/processor_config.h"
#include "engine/vision/video_decoder.h"
#include "engine/vision/video_sampler.h"

namespace bm::daemon::openai {
namespace {

using engine::MediaKind;
namespace vision = engine::vision;

// One row per media part type: the OpenAI name, the field holding the URL object, the kind, the template's part,
// the pad token, the fetch timeout (vLLM's VLLM_IMAGE_FETCH_TIMEOUT / VLLM_VIDEO_FETCH_TIMEOUT defaults) and the
// words for messages.
struct KindRow {
  const char* type;
  MediaKind kind;
  const char* template_type;
  long fetch_seconds;
  const char* noun;
  const char* nouns;
  const char* pad;
};
constexpr KindRow kKinds[] = {
    {"image_url", MediaKind::kImage, "image", 5, "image", "images", "<|image_pad|>"},
    {"video_url", MediaKind::kVideo, "video", 30, "video", "videos", "<|video_pad|>"},
};

const KindRow& row(MediaKind kind) {
  return kind == MediaKind::kImage ? kKinds[0] : kKinds[1];
}

ApiError bad(const std::string& param, const std::string& message) {
  return ApiError{400, absl::StrCat(param, ": ", message), param};
}

// A bm_vision status as the client's 400 (bad input) — or, for what is not the input's fault (memory), a 500.
ApiError from_status(const std::string& param, const absl::Status& status) {
  if (status.code() == absl::StatusCode::kInvalidArgument) return bad(param, std::string(status.message()));
  return ApiError{500, absl::StrCat(param, ": ", status.message()), param};
}

struct Prepared {
  vision::PatchedMedia patched;
  float second_per_grid_t = 1.0f;
};

std::variant<Prepared, ApiError> prepare_image(const std::string& bytes, const MediaPart& part,
                                               const vision::ProcessorConfig& config, vision::PixelRange range,
                                               int64_t tokens_so_far, int64_t max_tokens) {
  absl::StatusOr<vision::RgbImage> image = vision::decode_image(bytes);
  if (!image.ok()) return from_status(part.param, image.status());
  // Counted from the decoded size before the resize allocates the pixel values.
  absl::StatusOr<int64_t> tokens = vision::num_image_tokens(image->height, image->width, config, range);
  if (!tokens.ok()) return from_status(part.param, tokens.status());
  if (tokens_so_far + *tokens >= max_tokens)
    return ApiError{400,
                    absl::StrCat("the images and videos up to ", part.param, " take ", tokens_so_far + *tokens,
                                 " tokens, more than the model's context of ", max_tokens,
                                 " tokens; send fewer or smaller ones (or a lower max_pixels in mm_processor_kwargs)"),
                    part.param};
  absl::StatusOr<vision::PatchedMedia> patched = vision::preprocess_image(*image, config, range);
  if (!patched.ok()) return from_status(part.param, patched.status());
  return Prepared{*std::move(patched), 1.0f};
}

std::variant<Prepared, ApiError> prepare_video(const std::string& bytes, const MediaPart& part,
                                               const vision::ProcessorConfig& config,
                                               const serving::ProcessorKwargs& kwargs) {
  vision::VideoSampling sampling;
  sampling.fps = kwargs.fps;  // unset: qwen-vl-utils' 2 frames per second
  absl::StatusOr<vision::DecodedVideo> video =
      vision::decode_video(bytes, sampling, vision::VideoLimits{}, config.temporal_patch_size);
  if (!video.ok()) return from_status(part.param, video.status());
  if (video->frames.empty() || video->total_frames <= 0 || !(video->fps > 0))
    return bad(part.param, "The video has no decodable frames.");
  absl::StatusOr<vision::PatchedMedia> patched = vision::preprocess_selected_frames(video->frames, sampling, config);
  if (!patched.ok()) return from_status(part.param, patched.status());
  // qwen-vl-utils: sample_fps = nframes / total_frames * video_fps; the processor's second_per_grid_ts is
  // temporal_patch_size / sample_fps (float64 in Python, a float32 tensor after).
  const double sample_fps =
      static_cast<double>(video->frames.size()) / static_cast<double>(video->total_frames) * video->fps;
  const double seconds = config.temporal_patch_size / sample_fps;
  if (!std::isfinite(seconds) || seconds <= 0) return bad(part.param, "The video has no usable frame rate.");
  return Prepared{*std::move(patched), static_cast<float>(seconds)};
}

}  // namespace

const MediaKind* media_part_kind(const std::string& type) {
  for (const KindRow& r : kKinds)
    if (type == r.type) return &r.kind;
  return nullptr;
}

RequestJson template_part(MediaKind kind) {
  RequestJson part = RequestJson::object();
  part["type"] = row(kind).template_type;
  return part;
}

std::variant<MediaPart, ApiError> read_media_part(const RequestJson& part, MediaKind kind, const std::string& param) {
  const KindRow& r = row(kind);
  const std::string shape =
      absl::StrCat("a '", r.type, "' part must be {\"type\": \"", r.type, "\", \"", r.type, "\": {\"url\": \"...\"}}");
  auto field = part.find(r.type);
  if (field == part.end() || !field->is_object()) return bad(param, shape);
  auto url = field->find("url");
  if (url == field->end() || !url->is_string() || url->get_ref<const std::string&>().empty()) return bad(param, shape);
  if (auto detail = field->find("detail"); detail != field->end() && !detail->is_null()) {
    const bool known = detail->is_string() && (*detail == "auto" || *detail == "low" || *detail == "high");
    if (!known) return bad(param, absl::StrCat("'", r.type, ".detail' must be auto, low or high"));
  }
  return MediaPart{kind, url->get<std::string>(), param};
}

std::variant<std::shared_ptr<engine::PromptMedia>, ApiError> load_media(const std::vector<MediaPart>& parts,
                                                                        const MediaBudget& budget) {
  const serving::MediaOptions& options = *budget.options;
  const int64_t counts[] = {
      std::count_if(parts.begin(), parts.end(), [](const MediaPart& p) { return p.kind == MediaKind::kImage; }),
      std::count_if(parts.begin(), parts.end(), [](const MediaPart& p) { return p.kind == MediaKind::kVideo; })};
  const int32_t limits[] = {options.max_images, options.max_videos};
  for (int k = 0; k < 2; ++k)
    if (counts[k] > limits[k])
      return ApiError{400,
                      absl::StrCat("the messages hold ", counts[k], " ", kKinds[k].nouns, ", more than the ", limits[k],
                                   " per prompt this model is served with (--limit-mm-per-prompt)"),
                      "messages"};
  if (budget.processor == nullptr)
    return ApiError{400, "this model's folder has no preprocessor_config.json, so it cannot take images or videos",
                    "messages"};
  const vision::ProcessorConfig& config = *budget.processor;
  const vision::PixelRange range{budget.kwargs.min_pixels.value_or(config.min_pixels),
                                 budget.kwargs.max_pixels.value_or(config.max_pixels)};
  if (range.min_pixels > range.max_pixels)
    return ApiError{400,
                    absl::StrCat("mm_processor_kwargs: min_pixels ", range.min_pixels, " is above max_pixels ",
                                 range.max_pixels, " (the model's own bounds fill what the request leaves out)"),
                    "mm_processor_kwargs"};
  MediaSourcePolicy policy;
  policy.allowed_local_media_path = options.allowed_local_media_path;
  policy.allowed_media_domains = options.allowed_media_domains;
  policy.max_bytes = kMaxMediaBytes;

  auto media = std::make_shared<engine::PromptMedia>();
  int64_t tokens = 0;
  for (const MediaPart& part : parts) {
    policy.total_seconds = row(part.kind).fetch_seconds;
    absl::StatusOr<std::string> bytes = read_media_bytes(part.url, policy);
    if (!bytes.ok()) return from_status(part.param, bytes.status());
    std::variant<Prepared, ApiError> prepared =
        part.kind == MediaKind::kImage ? prepare_image(*bytes, part, config, range, tokens, budget.max_tokens)
                                       : prepare_video(*bytes, part, config, budget.kwargs);
    if (auto* err = std::get_if<ApiError>(&prepared)) return *err;
    Prepared& p = std::get<Prepared>(prepared);
    engine::MediaItem item;
    item.kind = part.kind;
    item.grid =
        engine::VisionGrid{static_cast<int32_t>(p.patched.grid_thw[0]), static_cast<int32_t>(p.patched.grid_thw[1]),
                           static_cast<int32_t>(p.patched.grid_thw[2])};
    item.pixel_values = std::move(p.patched.pixel_values);
    item.second_per_grid_t = p.second_per_grid_t;
    item.hash = engine::media_hash(item);
    tokens += item.num_tokens();
    if (tokens >= budget.max_tokens)
      return ApiError{400,
                      absl::StrCat("the images and videos up to ", part.param, " take ", tokens,
                                   " tokens, more than the model's context of ", budget.max_tokens,
                                   " tokens; send fewer or shorter ones (or a lower fps in mm_processor_kwargs)"),
                      part.param};
    media->items.push_back(std::move(item));
  }
  return media;
}

std::variant<std::vector<int32_t>, ApiError> expand_media_tokens(const std::vector<int32_t>& ids,
                                                                 engine::PromptMedia& media, PadTokenIds pads) {
  const int32_t pad_ids[] = {pads.image, pads.video};
  std::vector<engine::MediaItem*> by_kind[2];
  for (engine::MediaItem& item : media.items) by_kind[item.kind == MediaKind::kImage ? 0 : 1].push_back(&item);
  int64_t found[2] = {0, 0};
  int64_t total = static_cast<int64_t>(ids.size());
  for (int32_t id : ids)
    for (int k = 0; k < 2; ++k)
      if (id == pad_ids[k] && id >= 0) ++found[k];
  for (int k = 0; k < 2; ++k) {
    const auto items = static_cast<int64_t>(by_kind[k].size());
    if (items > 0 && pad_ids[k] < 0)
      return ApiError{400,
                      absl::StrCat("the model's tokenizer has no ", kKinds[k].pad, " token for its ", kKinds[k].nouns),
                      "messages"};
    if (found[k] != items)
      return ApiError{400,
                      absl::StrCat("the rendered prompt holds ", found[k], " ", kKinds[k].pad, " tokens for ", items,
                                   " ", kKinds[k].nouns,
                                   found[k] > items ? " (is the pad token typed in a message's text?)"
                                                    : " (the chat template did not render every part)"),
                      "messages"};
    for (const engine::MediaItem* item : by_kind[k]) total += item->num_tokens() - 1;
  }
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(total));
  std::vector<engine::MediaItem> ordered;  // the items in the order of their runs, as PromptMedia promises
  ordered.reserve(media.items.size());
  size_t next[2] = {0, 0};
  for (int32_t id : ids) {
    int k = id >= 0 && id == pad_ids[0] ? 0 : id >= 0 && id == pad_ids[1] ? 1 : -1;
    if (k < 0) {
      out.push_back(id);
      continue;
    }
    engine::MediaItem* item = by_kind[k][next[k]++];
    out.insert(out.end(), static_cast<size_t>(item->num_tokens()), id);
    ordered.push_back(std::move(*item));  // each item is taken once
  }
  media.items = std::move(ordered);
  return out;
}

}  // namespace bm::daemon::openai
