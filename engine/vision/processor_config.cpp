#include "engine/vision/processor_config.h"

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace bm::engine::vision {
namespace {

using nlohmann::json;

absl::Status bad(std::string_view origin, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(origin), ": ", what));
}

absl::Status read_positive(const json& j, const char* key, std::string_view origin, int64_t& out) {
  if (!j.contains(key) || j[key].is_null()) return absl::OkStatus();
  if (!j[key].is_number_integer() || j[key].get<int64_t>() <= 0) {
    return bad(origin, absl::StrCat("\"", key, "\" must be a positive integer."));
  }
  out = j[key].get<int64_t>();
  return absl::OkStatus();
}

absl::Status read_triple(const json& j, const char* key, std::string_view origin, std::array<float, 3>& out,
                         bool must_be_nonzero) {
  if (!j.contains(key) || j[key].is_null()) return absl::OkStatus();
  const json& v = j[key];
  if (!v.is_array() || v.size() != 3) return bad(origin, absl::StrCat("\"", key, "\" must be 3 numbers."));
  for (size_t i = 0; i < 3; ++i) {
    if (!v[i].is_number()) return bad(origin, absl::StrCat("\"", key, "\" must be 3 numbers."));
    // numpy: np.array(mean, dtype=float32) of the Python floats.
    out[i] = static_cast<float>(v[i].get<double>());
    if (must_be_nonzero && out[i] == 0.0f) return bad(origin, absl::StrCat("\"", key, "\" has a zero."));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ProcessorConfig> parse_processor_config(std::string_view text, std::string_view origin) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad(origin, "not a JSON object.");
  ProcessorConfig c;
  if (j.contains("image_processor_type") && j["image_processor_type"].is_string()) {
    const auto type = j["image_processor_type"].get<std::string>();
    if (type != "Qwen2VLImageProcessor" && type != "Qwen2VLImageProcessorFast" && type != "Qwen2VLImageProcessorPil") {
      return bad(origin, absl::StrCat("image processor \"", type, "\" is not the Qwen2-VL one."));
    }
  }
  for (const char* flag : {"do_resize", "do_rescale", "do_normalize", "do_convert_rgb"}) {
    if (j.contains(flag) && !(j[flag].is_boolean() && j[flag].get<bool>())) {
      return bad(origin, absl::StrCat("\"", flag, "\" other than true is not supported."));
    }
  }
  // PILImageResampling.BICUBIC is 3.
  if (j.contains("resample") && !(j["resample"].is_number_integer() && j["resample"].get<int>() == 3)) {
    return bad(origin, "only bicubic resampling (\"resample\": 3) is supported.");
  }
  if (j.contains("size") && j["size"].is_object()) {
    if (auto s = read_positive(j["size"], "shortest_edge", origin, c.min_pixels); !s.ok()) return s;
    if (auto s = read_positive(j["size"], "longest_edge", origin, c.max_pixels); !s.ok()) return s;
  }
  if (auto s = read_positive(j, "min_pixels", origin, c.min_pixels); !s.ok()) return s;
  if (auto s = read_positive(j, "max_pixels", origin, c.max_pixels); !s.ok()) return s;
  int64_t patch = c.patch_size, temporal = c.temporal_patch_size, merge = c.merge_size;
  if (auto s = read_positive(j, "patch_size", origin, patch); !s.ok()) return s;
  if (auto s = read_positive(j, "temporal_patch_size", origin, temporal); !s.ok()) return s;
  if (auto s = read_positive(j, "merge_size", origin, merge); !s.ok()) return s;
  if (patch > 1024 || temporal > 64 || merge > 64) return bad(origin, "patch sizes are implausibly large.");
  c.patch_size = static_cast<int32_t>(patch);
  c.temporal_patch_size = static_cast<int32_t>(temporal);
  c.merge_size = static_cast<int32_t>(merge);
  if (j.contains("rescale_factor")) {
    if (!j["rescale_factor"].is_number() || j["rescale_factor"].get<double>() <= 0) {
      return bad(origin, "\"rescale_factor\" must be a positive number.");
    }
    c.rescale_factor = j["rescale_factor"].get<double>();
  }
  if (auto s = read_triple(j, "image_mean", origin, c.image_mean, false); !s.ok()) return s;
  if (auto s = read_triple(j, "image_std", origin, c.image_std, true); !s.ok()) return s;
  if (c.min_pixels > c.max_pixels) return bad(origin, "min_pixels is above max_pixels.");
  return c;
}

absl::StatusOr<ProcessorConfig> load_processor_config(const std::filesystem::path& model_dir) {
  const auto path = model_dir / "preprocessor_config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot be read."));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_processor_config(text, path.string());
}

}  // namespace bm::engine::vision
