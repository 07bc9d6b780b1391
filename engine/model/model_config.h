#pragma once
// The architecture facts of a Hugging Face `config.json`, as far as the decoder-only models we run need them.
// Parsing accepts both the transformers 4.x spelling (`rope_theta`, `rope_scaling`, `torch_dtype`) and the 5.x
// one (`rope_parameters`, `dtype`), and the nested `text_config` of multimodal configs. Whether the model can
// be run is a separate question (engine/models/model_loader.h): this only reads what the file says.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace bm::engine {

struct RopeConfig {
  std::string type = "default";  // "default", "llama3", "mrope", or whatever else the file names
  double theta = 10000.0;
  // llama3 scaling
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int32_t original_max_position_embeddings = 0;
  std::vector<int32_t> mrope_section;  // Qwen2.5-VL
};

// `quantization_config` as the file says it; whether we can run it is engine/models/quant_scheme.h's question.
struct QuantizationConfig {
  std::string method;  // "gptq", "awq", ...
  int32_t bits = 0;
  int32_t group_size = 0;
  bool desc_act = false;
  bool sym = true;
  bool zero_point = true;  // AWQ; transformers' AwqConfig defaults it to true
  std::string version;     // AWQ packing ("gemm")
  // GPTQ serialization: "gptq" (v1, zero-points stored minus one; the default), "gptq_v2", "marlin", ...
  std::string checkpoint_format;
  bool is_marlin_format = false;
  bool lm_head = false;      // gptqmodel: the head is quantized too
  bool has_dynamic = false;  // gptqmodel: per-module overrides ("dynamic") are present
  std::vector<std::string> modules_to_not_convert;
};

struct ModelConfig {
  std::string architecture;  // first of "architectures"
  std::string model_type;
  std::string dtype;  // "bfloat16", "float16", "float32" as the file says; empty when absent
  std::string hidden_act = "silu";
  int32_t hidden_size = 0;
  int32_t intermediate_size = 0;
  int32_t num_layers = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;  // explicit `head_dim`, else hidden_size / num_heads
  int32_t vocab_size = 0;
  int32_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // Llama's switch for q/k/v/o biases (Qwen2 always has q/k/v biases)
  bool mlp_bias = false;
  bool use_sliding_window = false;
  RopeConfig rope;
  std::optional<QuantizationConfig> quantization;
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;
};

// `source` names the file in error messages.
absl::StatusOr<ModelConfig> parse_model_config(std::string_view json_text, std::string_view source);
// Reads <model_dir>/config.json.
absl::StatusOr<ModelConfig> read_model_config(const std::filesystem::path& model_dir);

}  // namespace bm::engine
