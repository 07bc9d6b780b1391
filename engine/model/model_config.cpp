#include "engine/model/model_config.h"

#include <fstream>
#include <limits>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/model/json_fields.h"
#include "nlohmann/json.hpp"

namespace bm::engine {
namespace {

using nlohmann::json;

// Bounds that keep every product of sizes inside int64 and reject nonsense early.
constexpr int64_t kMaxDimension = int64_t{1} << 24;

absl::Status read_rope(const json& text_config, std::string_view source, RopeConfig& rope) {
  // transformers 5 folds rope_theta into rope_parameters; 4.x has rope_theta beside an optional rope_scaling.
  JsonFieldReader top(text_config, source);
  rope.theta = top.number_or("rope_theta", rope.theta);
  const json* scaling = nullptr;
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const auto it = text_config.find(key);
    if (it != text_config.end() && !it->is_null()) {
      if (!it->is_object())
        return absl::InvalidArgumentError(
            absl::StrCat(std::string(source), ": field '", std::string(key), "' is not an object"));
      scaling = &*it;
      break;
    }
  }
  if (scaling != nullptr) {
    JsonFieldReader fields(*scaling, source);
    // Old files say "type", newer ones "rope_type".
    rope.type = fields.get_string("rope_type").value_or(fields.get_string("type").value_or("default"));
    rope.theta = fields.number_or("rope_theta", rope.theta);
    rope.factor = fields.number_or("factor", rope.factor);
    rope.low_freq_factor = fields.number_or("low_freq_factor", rope.low_freq_factor);
    rope.high_freq_factor = fields.number_or("high_freq_factor", rope.high_freq_factor);
    rope.original_max_position_embeddings = static_cast<int32_t>(fields.int_or("original_max_position_embeddings", 0));
    if (const auto it = scaling->find("mrope_section"); it != scaling->end() && it->is_array()) {
      for (const json& part : *it) {
        if (!part.is_number_integer())
          return absl::InvalidArgumentError(absl::StrCat(std::string(source), ": bad mrope_section"));
        rope.mrope_section.push_back(part.get<int32_t>());
      }
    }
    if (!fields.status().ok()) return fields.status();
  }
  if (!top.status().ok()) return top.status();
  if (!(rope.theta > 0))
    return absl::InvalidArgumentError(absl::StrCat(std::string(source), ": rope_theta must be positive"));
  return absl::OkStatus();
}

absl::Status read_quantization(const json& config, std::string_view source, ModelConfig& model) {
  const auto it = config.find("quantization_config");
  if (it == config.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object())
    return absl::InvalidArgumentError(absl::StrCat(std::string(source), ": 'quantization_config' is not an object"));
  JsonFieldReader fields(*it, source);
  QuantizationConfig quantization;
  quantization.method = fields.get_string("quant_method").value_or("");
  quantization.bits = static_cast<int32_t>(fields.int_or("bits", 0));
  quantization.group_size = static_cast<int32_t>(fields.int_or("group_size", 0));
  quantization.desc_act = fields.bool_or("desc_act", false);
  quantization.sym = fields.bool_or("sym", true);
  quantization.zero_point = fields.bool_or("zero_point", true);
  quantization.version = fields.get_string("version").value_or("");
  // gptqmodel writes "checkpoint_format", older AutoGPTQ/optimum files "format" or nothing (v1).
  quantization.checkpoint_format =
      fields.get_string("checkpoint_format").value_or(fields.get_string("format").value_or(""));
  quantization.is_marlin_format = fields.bool_or("is_marlin_format", false);
  quantization.lm_head = fields.bool_or("lm_head", false);
  if (!fields.status().ok()) return fields.status();
  if (const auto dynamic = it->find("dynamic"); dynamic != it->end() && !dynamic->is_null()) {
    quantization.has_dynamic = !dynamic->is_object() || !dynamic->empty();
  }
  if (const auto modules = it->find("modules_to_not_convert"); modules != it->end() && !modules->is_null()) {
    if (!modules->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(source), ": 'quantization_config.modules_to_not_convert' is not a list"));
    }
    for (const json& module : *modules) {
      if (!module.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            std::string(source), ": 'quantization_config.modules_to_not_convert' holds a value that is not a string"));
      }
      quantization.modules_to_not_convert.push_back(module.get<std::string>());
    }
  }
  if (quantization.method.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(source), ": 'quantization_config' has no 'quant_method'"));
  }
  model.quantization = std::move(quantization);
  return absl::OkStatus();
}

absl::Status require_dimension(std::string_view source, std::string_view key, int64_t value) {
  if (value <= 0 || value > kMaxDimension) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(source), ": '", std::string(key),
                                                   "' must be a positive count below ", kMaxDimension, ", got ",
                                                   value));
  }
  return absl::OkStatus();
}

absl::Status check_sizes(const ModelConfig& model, std::string_view source) {
  const std::pair<std::string_view, int64_t> sizes[] = {
      {"hidden_size", model.hidden_size},
      {"intermediate_size", model.intermediate_size},
      {"num_hidden_layers", model.num_layers},
      {"num_attention_heads", model.num_heads},
      {"num_key_value_heads", model.num_kv_heads},
      {"head_dim", model.head_dim},
      {"vocab_size", model.vocab_size},
      {"max_position_embeddings", model.max_position_embeddings},
  };
  for (const auto& [key, value] : sizes) {
    if (absl::Status status = require_dimension(source, key, value); !status.ok()) return status;
  }
  if (model.num_heads % model.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(source), ": num_attention_heads (", model.num_heads,
                                                   ") is not a multiple of num_key_value_heads (", model.num_kv_heads,
                                                   ")"));
  }
  if (model.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(source), ": head_dim ", model.head_dim, " is odd; RoPE needs pairs"));
  }
  if (!(model.rms_norm_eps > 0))
    return absl::InvalidArgumentError(absl::StrCat(std::string(source), ": rms_norm_eps must be positive"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> parse_model_config(std::string_view json_text, std::string_view source) {
  const json config = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(source), " is not a JSON object"));
  }
  ModelConfig model;
  const auto architectures = config.find("architectures");
  if (architectures == config.end() || !architectures->is_array() || architectures->empty() ||
      !(*architectures)[0].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(source), " has no 'architectures' list"));
  }
  model.architecture = (*architectures)[0].get<std::string>();

  // Multimodal configs (transformers ≥ 4.50 layout) keep the language model's fields in text_config.
  const auto nested = config.find("text_config");
  const json& text_config = nested != config.end() && nested->is_object() ? *nested : config;
  JsonFieldReader top(config, source);
  JsonFieldReader text(text_config, source);
  model.model_type = top.get_string("model_type").value_or("");
  model.dtype = top.get_string("torch_dtype").value_or(top.get_string("dtype").value_or(""));
  if (model.dtype.empty()) model.dtype = text.get_string("torch_dtype").value_or(text.get_string("dtype").value_or(""));
  model.hidden_act = text.get_string("hidden_act").value_or("silu");
  model.hidden_size = static_cast<int32_t>(text.int_or("hidden_size", 0));
  model.intermediate_size = static_cast<int32_t>(text.int_or("intermediate_size", 0));
  model.num_layers = static_cast<int32_t>(text.int_or("num_hidden_layers", 0));
  model.num_heads = static_cast<int32_t>(text.int_or("num_attention_heads", 0));
  model.num_kv_heads = static_cast<int32_t>(text.int_or("num_key_value_heads", model.num_heads));
  const int64_t explicit_head_dim = text.int_or("head_dim", 0);
  model.vocab_size = static_cast<int32_t>(text.int_or("vocab_size", 0));
  model.max_position_embeddings = static_cast<int32_t>(text.int_or("max_position_embeddings", 0));
  model.rms_norm_eps = text.number_or("rms_norm_eps", model.rms_norm_eps);
  model.tie_word_embeddings = top.bool_or("tie_word_embeddings", text.bool_or("tie_word_embeddings", false));
  model.attention_bias = text.bool_or("attention_bias", false);
  model.mlp_bias = text.bool_or("mlp_bias", false);
  model.use_sliding_window = text.bool_or("use_sliding_window", false);
  // transformers 5 saves a multimodal model's special ids in text_config only; the hub's files have them on top.
  std::optional<int64_t> bos = top.get_int("bos_token_id");
  if (!bos) bos = text.get_int("bos_token_id");
  if (bos && *bos >= 0) model.bos_token_id = static_cast<int32_t>(*bos);
  model.eos_token_ids = top.get_token_ids("eos_token_id");
  if (model.eos_token_ids.empty()) model.eos_token_ids = text.get_token_ids("eos_token_id");
  for (const JsonFieldReader* fields : {&top, &text}) {
    if (!fields->status().ok()) return fields->status();
  }
  if (model.num_heads > 0 && model.hidden_size > 0) {
    if (explicit_head_dim > 0) {
      model.head_dim = static_cast<int32_t>(explicit_head_dim);
    } else if (model.hidden_size % model.num_heads == 0) {
      model.head_dim = model.hidden_size / model.num_heads;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(std::string(source), ": hidden_size ", model.hidden_size,
                                                     " is not a multiple of num_attention_heads ", model.num_heads,
                                                     " and there is no head_dim"));
    }
  }
  if (absl::Status status = check_sizes(model, source); !status.ok()) return status;
  if (absl::Status status = read_rope(text_config, source, model.rope); !status.ok()) return status;
  if (absl::Status status = read_quantization(config, source, model); !status.ok()) return status;
  return model;
}

absl::StatusOr<ModelConfig> read_model_config(const std::filesystem::path& model_dir) {
  const std::filesystem::path path = model_dir / "config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat("model folder ", model_dir.string(), " has no readable config.json"));
  std::ostringstream text;
  text << in.rdbuf();
  return parse_model_config(text.str(), path.string());
}

}  // namespace bm::engine
