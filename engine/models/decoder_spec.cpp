#include "engine/models/decoder_spec.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/models/rope_frequencies.h"

namespace bm::engine {

namespace {

// Architectures whose language model is Qwen2's decoder (q/k/v biases, no o_proj or MLP bias). Qwen2.5-VL's is,
// with M-RoPE, which for text-only prompts is Qwen2's 1-D RoPE (its three position rows are equal).
constexpr std::string_view kQwen2Decoders[] = {"Qwen2ForCausalLM", "Qwen2_5_VLForConditionalGeneration"};

bool is_qwen2_decoder(std::string_view architecture) {
  for (const std::string_view name : kQwen2Decoders) {
    if (architecture == name) return true;
  }
  return false;
}

}  // namespace

bool is_supported_architecture(const std::string& architecture) {
  return is_qwen2_decoder(architecture) || architecture == "LlamaForCausalLM";
}

absl::StatusOr<DecoderSpec> make_decoder_spec(const ModelConfig& config, std::string_view backend) {
  if (!is_supported_architecture(config.architecture)) {
    return absl::UnimplementedError(
        absl::StrCat("architecture ", config.architecture,
                     " is not supported (supported: Qwen2ForCausalLM, Qwen2_5_VLForConditionalGeneration, "
                     "LlamaForCausalLM)"));
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
  const bool is_qwen2 = is_qwen2_decoder(config.architecture);
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
  int64_t mrope_total = 0;
  for (const int32_t part : config.rope.mrope_section) mrope_total += part;
  if (!config.rope.mrope_section.empty() &&
      (config.rope.mrope_section.size() != 3 || mrope_total != config.head_dim / 2)) {
    return absl::InvalidArgumentError(
        absl::StrCat("mrope_section must be three counts adding up to head_dim / 2 = ", config.head_dim / 2, ", got ",
                     config.rope.mrope_section.size(), " adding up to ", mrope_total));
  }
  spec.mrope_section = config.rope.mrope_section;
  spec.quantization = std::move(quantization);
  return spec;
}

int64_t decode_read_weight_bytes(const DecoderSpec& spec, int64_t weight_bytes, int64_t input_embedding_bytes) {
  return spec.tie_word_embeddings ? weight_bytes : weight_bytes - input_embedding_bytes;
}

DecoderWeightBytes float_weight_bytes(const DecoderSpec& spec, int64_t value_bytes) {
  const int64_t hidden = spec.hidden_size;
  const int64_t q_size = int64_t{spec.num_heads} * spec.head_dim;
  const int64_t kv_size = int64_t{spec.num_kv_heads} * spec.head_dim;
  const int64_t inter = spec.intermediate_size;
  const int64_t table = int64_t{spec.vocab_size} * hidden;
  // The layout of decoder_weights.cpp's tensor list: projections [out, in] with optional biases, two norms.
  int64_t layer = q_size * hidden + 2 * kv_size * hidden + hidden * q_size + 3 * inter * hidden + 2 * hidden;
  if (spec.qkv_bias) layer += q_size + 2 * kv_size;
  if (spec.o_bias) layer += hidden;
  if (spec.mlp_bias) layer += 2 * inter + hidden;
  const int64_t values = table + spec.num_layers * layer + hidden + (spec.tie_word_embeddings ? 0 : table);
  DecoderWeightBytes bytes;
  bytes.total = values * value_bytes;
  bytes.read_per_decode_step = decode_read_weight_bytes(spec, bytes.total, table * value_bytes);
  return bytes;
}

absl::StatusOr<DecoderSpec> shard_decoder_spec(const DecoderSpec& spec, int32_t size) {
  if (size < 1) return absl::InvalidArgumentError(absl::StrCat("a tensor-parallel size of ", size, " is not positive"));
  if (size == 1) return spec;
  const auto refuse = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("tensor-parallel size ", size, " does not fit this model: ", what));
  };
  if (spec.num_heads % size != 0)
    return refuse(absl::StrCat("it must divide the ", spec.num_heads, " attention heads"));
  if (spec.num_kv_heads % size != 0 && size % spec.num_kv_heads != 0)
    return refuse(absl::StrCat("it must divide the ", spec.num_kv_heads, " KV heads or be a multiple of them"));
  if (spec.intermediate_size % size != 0)
    return refuse(absl::StrCat("it must divide the intermediate size ", spec.intermediate_size));
  DecoderSpec out = spec;
  out.num_heads = spec.num_heads / size;
  out.num_kv_heads = Shard::kv_heads_per_rank(spec.num_kv_heads, size);
  out.intermediate_size = spec.intermediate_size / size;
  return out;
}

}  // namespace bm::engine
