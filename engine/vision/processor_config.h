#pragma once
// The Qwen2-VL image processor settings of a model folder (preprocessor_config.json), with transformers'
// defaults for what the file leaves out. `min_pixels` / `max_pixels` override `size.shortest_edge` /
// `size.longest_edge`, as Qwen2VLImageProcessor's constructor does.
#include <array>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "absl/status/statusor.h"

namespace bm::engine::vision {

struct ProcessorConfig {
  int64_t min_pixels = 56 * 56;
  int64_t max_pixels = 28 * 28 * 1280;
  int32_t patch_size = 14;
  int32_t temporal_patch_size = 2;
  int32_t merge_size = 2;
  double rescale_factor = 1.0 / 255.0;
  // OPENAI_CLIP_MEAN / OPENAI_CLIP_STD, stored as float as numpy does before normalizing float32 pixels.
  std::array<float, 3> image_mean = {0.48145466f, 0.4578275f, 0.40821073f};
  std::array<float, 3> image_std = {0.26862954f, 0.26130258f, 0.27577711f};

  int64_t factor() const { return int64_t{patch_size} * merge_size; }
};

// `origin` names the file in messages. InvalidArgument for malformed JSON, wrong types, non-positive sizes,
// and for settings this processor does not implement (do_resize / do_rescale / do_normalize false, a resample
// other than bicubic, a processor type other than Qwen2VLImageProcessor).
absl::StatusOr<ProcessorConfig> parse_processor_config(std::string_view json, std::string_view origin);
absl::StatusOr<ProcessorConfig> load_processor_config(const std::filesystem::path& model_dir);

}  // namespace bm::engine::vision
