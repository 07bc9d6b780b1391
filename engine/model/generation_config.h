#pragma once
// The sampling defaults a model ships in `generation_config.json`. A field the file leaves out stays unset so
// the caller can tell "the model recommends X" from "nothing said".
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace bm::engine {

struct GenerationConfig {
  std::optional<bool> do_sample;
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int32_t> top_k;
  std::optional<float> repetition_penalty;
  std::optional<int32_t> bos_token_id;
  std::optional<int32_t> pad_token_id;
  std::vector<int32_t> eos_token_ids;  // generation stops at any of these
};

// `source` names the file in error messages.
absl::StatusOr<GenerationConfig> parse_generation_config(std::string_view json_text, std::string_view source);
// Reads <model_dir>/generation_config.json; a folder without one yields an empty GenerationConfig.
absl::StatusOr<GenerationConfig> read_generation_config(const std::filesystem::path& model_dir);

}  // namespace bm::engine
