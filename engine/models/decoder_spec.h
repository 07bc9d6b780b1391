#pragma once
// What the shared Llama-family decoder runs, derived from a model's config.json. Qwen2 and Llama differ only
// in these fields (which projections carry a bias, tied embeddings, the RoPE table), so one implementation
// (DecoderLM) serves both, and the language model of Qwen2.5-VL, which is Qwen2's.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"
#include "engine/models/quant_scheme.h"

namespace bm::engine {

struct DecoderSpec {
  std::string architecture;
  int32_t hidden_size = 0;
  int32_t intermediate_size = 0;
  int32_t num_layers = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t vocab_size = 0;
  int32_t max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  bool qkv_bias = false;  // Qwen2 always; Llama when attention_bias
  bool o_bias = false;    // Llama when attention_bias
  bool mlp_bias = false;
  bool tie_word_embeddings = false;
  std::vector<float> rope_inv_freq;  // head_dim / 2 entries
  // Qwen2.5-VL's M-RoPE: how many of the head_dim / 2 frequencies turn with the temporal, height and width
  // position rows (mrope_rotary_table); empty for 1-D RoPE. Text-only prompts need none of it.
  std::vector<int32_t> mrope_section;
  std::optional<QuantScheme> quantization;  // GPTQ / AWQ weight-only linear layers; unset for float checkpoints
};

// Weight bytes of a float checkpoint with this spec at `value_bytes` per value (biases and norms included;
// equals the safetensors index's total_size for a bf16 checkpoint), and what one batch-1 decode step reads of
// them: everything except an untied input-embedding table, of which a step reads only the looked-up rows (a tied
// table is the lm_head and is read whole). The decode bandwidth ceiling divides the bandwidth by the latter.
struct DecoderWeightBytes {
  int64_t total = 0;
  int64_t read_per_decode_step = 0;
};
DecoderWeightBytes float_weight_bytes(const DecoderSpec& spec, int64_t value_bytes);
// The same rule for weights as held on a device (quantized layers packed): `weight_bytes` less the held input
// embedding table `input_embedding_bytes` unless the table is tied to the lm_head.
int64_t decode_read_weight_bytes(const DecoderSpec& spec, int64_t weight_bytes, int64_t input_embedding_bytes);

// One rank's place in a tensor-parallel group (docs/tensor-parallel.md).
struct Shard {
  int32_t rank = 0;
  int32_t size = 1;
  // Where a rank's KV heads start, and how many it holds: its share when size divides num_kv_heads; one head,
  // replicated on size / num_kv_heads ranks, when size is a multiple of it (as vLLM does).
  int32_t first_kv_head(int32_t num_kv_heads) const {
    return size <= num_kv_heads ? rank * (num_kv_heads / size) : rank / (size / num_kv_heads);
  }
  static int32_t kv_heads_per_rank(int32_t num_kv_heads, int32_t size) {
    return size <= num_kv_heads ? num_kv_heads / size : 1;
  }
};

// The spec one rank runs: its query heads, KV heads and intermediate features (hidden size, vocabulary and
// everything else unchanged). A size that does not divide the heads or the intermediate size, KV heads that
// neither divide nor are divided by it is an error naming it. (Whether a GPTQ/AWQ layer's packed words and groups
// split is checked per layer as its tensors are found: convert_quantized_layer.)
absl::StatusOr<DecoderSpec> shard_decoder_spec(const DecoderSpec& spec, int32_t size);

// The architectures DecoderLM implements.
bool is_supported_architecture(const std::string& architecture);

// Fails with a sentence naming what is not supported (architecture, quantization format, activation, sliding
// window, RoPE type). Quantized checkpoints run on the cpu backend only for now; `backend` names the one asked.
absl::StatusOr<DecoderSpec> make_decoder_spec(const ModelConfig& config, std::string_view backend);

}  // namespace bm::engine
