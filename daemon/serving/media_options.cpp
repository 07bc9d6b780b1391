#include "daemon/serving/media_options.h"

#include <cmath>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/identifier_checks.h"
#include "daemon/serving/served_model.h"

namespace bm::daemon::serving {
namespace {

using json = nlohmann::json;

absl::StatusOr<json> parse_object(const std::string& text, const std::string& what) {
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded() || !value.is_object())
    return absl::InvalidArgumentError(absl::StrCat(
        what, " must be a JSON object, e.g. ",
        what == "--limit-mm-per-prompt" ? "'{\"image\": 4, \"video\": 1}'" : "'{\"max_pixels\": 1003520}'"));
  return value;
}

// A JSON integer in [lo, hi] (a float with no fraction counts: JSON writers differ).
std::optional<int64_t> whole_number(const json& v, int64_t lo, int64_t hi) {
  double d = 0;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)) return std::nullopt;
    d = static_cast<double>(v.get<int64_t>());
  } else if (v.is_number_float()) {
    d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d)) return std::nullopt;
  } else {
    return std::nullopt;
  }
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) return std::nullopt;
  return static_cast<int64_t>(d);
}

}  // namespace

ProcessorKwargs ProcessorKwargs::merged_with(const ProcessorKwargs& over) const {
  ProcessorKwargs out = *this;
  if (over.min_pixels) out.min_pixels = over.min_pixels;
  if (over.max_pixels) out.max_pixels = over.max_pixels;
  if (over.fps) out.fps = over.fps;
  return out;
}

absl::StatusOr<MediaOptions> parse_limit_mm_per_prompt(const std::string& json_text, MediaOptions base) {
  const std::string what = "--limit-mm-per-prompt";
  absl::StatusOr<json> value = parse_object(json_text, what);
  if (!value.ok()) return value.status();
  // One row per modality this server takes; others (audio) have no model here to read them.
  const std::map<std::string, int32_t MediaOptions::*> kModalities = {{"image", &MediaOptions::max_images},
                                                                      {"video", &MediaOptions::max_videos}};
  for (const auto& [key, v] : value->items()) {
    auto it = kModalities.find(key);
    if (it == kModalities.end())
      return absl::InvalidArgumentError(
          absl::StrCat(what, " names '", key.substr(0, 64), "'; the modalities are image and video"));
    std::optional<int64_t> n = whole_number(v, 0, kMaxMediaItemsPerPrompt);
    if (!n)
      return absl::InvalidArgumentError(
          absl::StrCat(what, " '", key, "' must be a whole number from 0 to ", kMaxMediaItemsPerPrompt));
    base.*(it->second) = static_cast<int32_t>(*n);
  }
  return base;
}

absl::StatusOr<ProcessorKwargs> parse_processor_kwargs(const std::string& json_text, const std::string& what) {
  absl::StatusOr<json> value = parse_object(json_text, what);
  if (!value.ok()) return value.status();
  ProcessorKwargs out;
  for (const auto& [key, v] : value->items()) {
    if (key == "min_pixels" || key == "max_pixels") {
      std::optional<int64_t> n = whole_number(v, 1, kMaxItemPixels);
      if (!n)
        return absl::InvalidArgumentError(
            absl::StrCat(what, " '", key, "' must be a whole number from 1 to ", kMaxItemPixels));
      (key == "min_pixels" ? out.min_pixels : out.max_pixels) = *n;
    } else if (key == "fps") {
      if (!v.is_number() || !(v.get<double>() > 0) || v.get<double>() > kMaxVideoFps)
        return absl::InvalidArgumentError(absl::StrCat(what, " 'fps' must be a number in (0, ", kMaxVideoFps, "]"));
      out.fps = v.get<double>();
    } else {
      return absl::InvalidArgumentError(absl::StrCat(what, " has '", key.substr(0, 64),
                                                     "', which the Qwen2.5-VL processor does not take (it takes "
                                                     "min_pixels, max_pixels and fps)"));
    }
  }
  if (out.min_pixels && out.max_pixels && *out.min_pixels > *out.max_pixels)
    return absl::InvalidArgumentError(
        absl::StrCat(what, " min_pixels ", *out.min_pixels, " is above max_pixels ", *out.max_pixels));
  return out;
}

absl::StatusOr<MediaOptions> media_options(const ServeSettings& s) {
  MediaOptions options;
  if (!s.limit_mm_per_prompt.empty()) {
    absl::StatusOr<MediaOptions> limited = parse_limit_mm_per_prompt(s.limit_mm_per_prompt, options);
    if (!limited.ok()) return limited.status();
    options = *std::move(limited);
  }
  if (!s.mm_processor_kwargs.empty()) {
    absl::StatusOr<ProcessorKwargs> kwargs = parse_processor_kwargs(s.mm_processor_kwargs, "--mm-processor-kwargs");
    if (!kwargs.ok()) return kwargs.status();
    options.processor = *kwargs;
  }
  if (!s.allowed_local_media_path.empty()) {
    const std::string what = "--allowed-local-media-path";
    if (absl::Status st = common::check_client_path(s.allowed_local_media_path, what); !st.ok()) return st;
    std::error_code ec;
    // Canonical (symlinks resolved), so a request's path is compared with the folder it really is.
    std::filesystem::path canonical = std::filesystem::canonical(s.allowed_local_media_path, ec);
    if (ec || !std::filesystem::is_directory(canonical, ec))
      return absl::InvalidArgumentError(
          absl::StrCat(what, " ", s.allowed_local_media_path, " is not a folder the daemon can see"));
    options.allowed_local_media_path = canonical.string();
  }
  for (absl::string_view part : absl::StrSplit(s.allowed_media_domains, ',', absl::SkipWhitespace())) {
    std::string host = absl::AsciiStrToLower(absl::StripAsciiWhitespace(part));
    // A host name or an IP address, nothing else: a scheme, port or path here would never match a URL's host.
    const bool plain = !host.empty() && host.size() <= 253 &&
                       host.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-:[]") == std::string::npos;
    if (!plain)
      return absl::InvalidArgumentError(absl::StrCat("--allowed-media-domains '", std::string(part).substr(0, 64),
                                                     "' is not a host name (give names like example.com, without "
                                                     "scheme, port or path)"));
    options.allowed_media_domains.push_back(std::move(host));
  }
  return options;
}

absl::Status normalise_media_settings(ServeSettings& s) {
  absl::StatusOr<MediaOptions> options = media_options(s);
  if (!options.ok()) return options.status();
  if (!s.limit_mm_per_prompt.empty())
    s.limit_mm_per_prompt = json{{"image", options->max_images}, {"video", options->max_videos}}.dump();
  if (!s.mm_processor_kwargs.empty()) {
    json kwargs = json::object();
    if (options->processor.min_pixels) kwargs["min_pixels"] = *options->processor.min_pixels;
    if (options->processor.max_pixels) kwargs["max_pixels"] = *options->processor.max_pixels;
    if (options->processor.fps) kwargs["fps"] = *options->processor.fps;
    s.mm_processor_kwargs = kwargs.empty() ? "" : kwargs.dump();
  }
  s.allowed_local_media_path = options->allowed_local_media_path;
  s.allowed_media_domains = absl::StrJoin(options->allowed_media_domains, ",");
  return absl::OkStatus();
}

}  // namespace bm::daemon::serving
