#include "engine/models/decoder_spec.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/models/rope_frequencies.h"

namespace bm::engine {

bool is_supported_architecture(const std::string& architecture) {
  return architecture == "Qwen2ForCausalLM" || architecture == "LlamaForCausalLM";
}

absl::StatusOr<DecoderSpec> make_decoder_spec(const ModelConfig& config, std::string_view backend) {
  if (!is_supported_architecture(config.architecture)) {
    return absl::UnimplementedError(absl::StrCat("architecture ", config.architecture,
                                                 " is not supported (supported: Qwen2ForCausalLM, LlamaForCausalLM)"));
  }
  std::optional<QuantScheme> quantization;
  if (config.quantization) {
    absl::StatusOr<QuantScheme> scheme = make_quant_scheme(*config.quantization);
    if (!scheme.ok()) return scheme.status();
    // The cpu and cuda backends run weight-only quantized layers (Backend::quantized_linear).
    if (backend != "cpu" && backend != "cuda") {
      return absl::UnimplementedError(absl::StrCat("quantization ", config.quantization->method, " (",
                                                   quant_scheme_name(*scheme), ") is not supported yet by the ",
                                                   std::string(backend), " backend; it runs on the cpu backend"));
    }
    quantization = std::move(*scheme);
  }
  if (config.hidden_act != "silu") {
    return absl::UnimplementedError(absl::StrCat("activation ", config.hidden_act, " is not supported (only silu)"));
  }
  if (config.use_sliding_window) {
    return absl::UnimplementedError("sliding-window attention (use_sliding_window: true) is not supported yet");
  }
  const bool is_qwen2 = config.architecture == "Qwen2ForCausalLM";
  DecoderSpec spec;
  spec.architecture = config.architecture;
  spec.hidden_size = config.hidden_size;
  spec.intermediate_size = config.intermediate_size;
  spec.num_layers = config.num_layers;
  spec.num_heads = config.num_heads;
  spec.num_kv_heads = config.num_kv_heads;
  spec.head_dim = config.head_dim;
  spec.vocab_size = config.vocab_size;
  spec.max_position_embeddings = config.max_position_embeddings;
  spec.rms_norm_eps = static_cast<float>(config.rms_norm_eps);
  spec.qkv_bias = is_qwen2 || config.attention_bias;
  spec.o_bias = !is_qwen2 && config.attention_bias;
  spec.mlp_bias = !is_qwen2 && config.mlp_bias;
  spec.tie_word_embeddings = config.tie_word_embeddings;
  absl::StatusOr<std::vector<float>> inv_freq =
      rope_inverse_frequencies(config.rope, config.head_dim, config.max_position_embeddings);
  if (!inv_freq.ok()) return inv_freq.status();
  spec.rope_inv_freq = std::move(*inv_freq);
  spec.quantization = std::move(quantization);
  return spec;
}

}  // namespace bm::engine
