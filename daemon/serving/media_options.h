#pragma once
// The media settings of one served model — vLLM's `--limit-mm-per-prompt`, `--mm-processor-kwargs`,
// `--allowed-local-media-path` and `--allowed-media-domains` — kept in ServeSettings as normalised strings (so they
// persist and travel like every other setting) and parsed here, in one place: serve_settings_from_proto refuses a
// bad value with this sentence, the engine manager parses them once per served model, and the API applies them to
// every request. The request field `mm_processor_kwargs` goes through the same parser.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace bm::daemon::serving {

struct ServeSettings;

// vLLM V1's default limit per modality (MultiModalConfig.limit_per_prompt: "1 (V0) or 999 (V1)"). Memory and time
// are bounded by max_model_len instead: every item's tokens count against it before the next item is decoded.
inline constexpr int32_t kDefaultMediaItemsPerPrompt = 999;
inline constexpr int32_t kMaxMediaItemsPerPrompt = 4096;  // what --limit-mm-per-prompt may raise the limit to
// Per-item bound on min_pixels / max_pixels: the Qwen2.5-VL processor's own max_pixels (16384 merged tokens,
// ~308 MB of float32 pixel values), so no setting or request makes one item costlier than the model allows.
inline constexpr int64_t kMaxItemPixels = int64_t{28} * 28 * 16384;
inline constexpr double kMaxVideoFps = 60;  // sampling faster than this only multiplies frames of one video

// Overrides of the image processor's min_pixels / max_pixels and of the video sampling rate (qwen-vl-utils' fps).
struct ProcessorKwargs {
  std::optional<int64_t> min_pixels;
  std::optional<int64_t> max_pixels;
  std::optional<double> fps;
  bool empty() const { return !min_pixels && !max_pixels && !fps; }
  // `over`'s fields win where set.
  ProcessorKwargs merged_with(const ProcessorKwargs& over) const;
};

struct MediaOptions {
  int32_t max_images = kDefaultMediaItemsPerPrompt;
  int32_t max_videos = kDefaultMediaItemsPerPrompt;
  ProcessorKwargs processor;
  std::string allowed_local_media_path;            // canonical folder; empty: local files are refused
  std::vector<std::string> allowed_media_domains;  // lower-case host names; empty: http(s) URLs are refused
};

// `{"image": N, "video": M}`; a modality left out keeps the default. `what` names the source in messages.
absl::StatusOr<MediaOptions> parse_limit_mm_per_prompt(const std::string& json_text, MediaOptions base);
// `{"min_pixels": .., "max_pixels": .., "fps": ..}`; unknown keys are refused (no processor reads them).
absl::StatusOr<ProcessorKwargs> parse_processor_kwargs(const std::string& json_text, const std::string& what);

// The settings' four strings, parsed and checked. Normalises nothing in place: see normalise_media_settings.
absl::StatusOr<MediaOptions> media_options(const ServeSettings& settings);
// Rewrites the four strings of `settings` in their one spelling (compact JSON, the folder canonical, the domains
// lower-case without spaces), or says which is wrong. The folder must exist (resolved as the daemon sees it).
absl::Status normalise_media_settings(ServeSettings& settings);

}  // namespace bm::daemon::serving
