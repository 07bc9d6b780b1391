#include "engine/model/generation_config.h"

#include <cstdint>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/model/json_fields.h"
#include "nlohmann/json.hpp"

namespace bm::engine {
namespace {

std::optional<float> as_float(std::optional<double> value) {
  return value ? std::optional<float>(static_cast<float>(*value)) : std::nullopt;
}

std::optional<int32_t> as_token_id(std::optional<int64_t> value) {
  return value && *value >= 0 && *value <= INT32_MAX ? std::optional<int32_t>(static_cast<int32_t>(*value))
                                                     : std::nullopt;
}

}  // namespace

absl::StatusOr<GenerationConfig> parse_generation_config(std::string_view json_text, std::string_view source) {
  const nlohmann::json object = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded() || !object.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(source), " is not a JSON object"));
  }
  JsonFieldReader fields(object, source);
  GenerationConfig config;
  config.do_sample = fields.get_bool("do_sample");
  config.temperature = as_float(fields.get_number("temperature"));
  config.top_p = as_float(fields.get_number("top_p"));
  if (const std::optional<int64_t> top_k = fields.get_int("top_k")) config.top_k = static_cast<int32_t>(*top_k);
  config.repetition_penalty = as_float(fields.get_number("repetition_penalty"));
  config.bos_token_id = as_token_id(fields.get_int("bos_token_id"));
  config.pad_token_id = as_token_id(fields.get_int("pad_token_id"));
  config.eos_token_ids = fields.get_token_ids("eos_token_id");
  if (!fields.status().ok()) return fields.status();
  if (config.temperature && *config.temperature < 0) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(source), ": temperature must not be negative"));
  }
  if (config.top_p && (*config.top_p <= 0 || *config.top_p > 1)) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(source), ": top_p must be in (0, 1]"));
  }
  if (config.top_k && *config.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(source), ": top_k must not be negative"));
  }
  if (config.repetition_penalty && *config.repetition_penalty <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(source), ": repetition_penalty must be positive"));
  }
  return config;
}

absl::StatusOr<GenerationConfig> read_generation_config(const std::filesystem::path& model_dir) {
  const std::filesystem::path path = model_dir / "generation_config.json";
  std::error_code error;
  if (!std::filesystem::exists(path, error)) return GenerationConfig{};
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::PermissionDeniedError(absl::StrCat("cannot read ", path.string()));
  std::ostringstream text;
  text << in.rdbuf();
  return parse_generation_config(text.str(), path.string());
}

}  // namespace bm::engine
