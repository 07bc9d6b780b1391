#pragma once
// Writes a Llama-family checkpoint with random BF16 weights (config.json + model.safetensors) for tests and the
// CPU benchmark. The tensor names and shapes are the Hugging Face ones for the given sizes.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/backend/cpu/bf16.h"
#include "engine/model/safetensors_writer.h"

namespace bm::engine::testing {

struct RandomCheckpointShape {
  std::string architecture = "Qwen2ForCausalLM";
  int32_t hidden_size = 64;
  int32_t intermediate_size = 128;
  int32_t num_layers = 2;
  int32_t num_heads = 4;
  int32_t num_kv_heads = 2;
  int32_t vocab_size = 256;
  bool tie_word_embeddings = true;
  DType dtype = DType::kBF16;  // of every tensor (F16 to test the unsupported-dtype error)
};

inline std::string random_checkpoint_config(const RandomCheckpointShape& shape) {
  return absl::StrCat(R"({"architectures": [")", shape.architecture, R"("], "hidden_size": )", shape.hidden_size,
                      R"(, "intermediate_size": )", shape.intermediate_size, R"(, "num_hidden_layers": )",
                      shape.num_layers, R"(, "num_attention_heads": )", shape.num_heads, R"(, "num_key_value_heads": )",
                      shape.num_kv_heads, R"(, "vocab_size": )", shape.vocab_size,
                      R"(, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,)",
                      R"( "hidden_act": "silu", "tie_word_embeddings": )", shape.tie_word_embeddings ? "true" : "false",
                      R"(, "torch_dtype": "bfloat16"})");
}

// Returns false when a file could not be written.
inline bool write_random_checkpoint(const std::filesystem::path& dir, const RandomCheckpointShape& shape,
                                    uint32_t seed = 1) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << random_checkpoint_config(shape);
  const int64_t hidden = shape.hidden_size;
  const int64_t head_dim = hidden / shape.num_heads;
  const int64_t q_size = shape.num_heads * head_dim;
  const int64_t kv_size = shape.num_kv_heads * head_dim;
  const bool has_qkv_bias = shape.architecture == "Qwen2ForCausalLM";
  std::vector<std::pair<std::string, std::vector<int64_t>>> tensors = {
      {"model.embed_tokens.weight", {shape.vocab_size, hidden}}, {"model.norm.weight", {hidden}}};
  if (!shape.tie_word_embeddings) tensors.push_back({"lm_head.weight", {shape.vocab_size, hidden}});
  for (int32_t i = 0; i < shape.num_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    tensors.push_back({p + "input_layernorm.weight", {hidden}});
    tensors.push_back({p + "post_attention_layernorm.weight", {hidden}});
    tensors.push_back({p + "self_attn.q_proj.weight", {q_size, hidden}});
    tensors.push_back({p + "self_attn.k_proj.weight", {kv_size, hidden}});
    tensors.push_back({p + "self_attn.v_proj.weight", {kv_size, hidden}});
    if (has_qkv_bias) {
      tensors.push_back({p + "self_attn.q_proj.bias", {q_size}});
      tensors.push_back({p + "self_attn.k_proj.bias", {kv_size}});
      tensors.push_back({p + "self_attn.v_proj.bias", {kv_size}});
    }
    tensors.push_back({p + "self_attn.o_proj.weight", {hidden, q_size}});
    tensors.push_back({p + "mlp.gate_proj.weight", {shape.intermediate_size, hidden}});
    tensors.push_back({p + "mlp.up_proj.weight", {shape.intermediate_size, hidden}});
    tensors.push_back({p + "mlp.down_proj.weight", {hidden, shape.intermediate_size}});
  }
  // Uniform in ±0.08 (standard deviation ≈ 0.05) from xorshift: the benchmark fills half a billion weights.
  uint64_t state = 0x9e3779b97f4a7c15ull ^ seed;
  auto next_uniform = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return static_cast<float>(state >> 40) * (1.0f / 16777216.0f) * 0.16f - 0.08f;
  };
  std::vector<std::vector<uint16_t>> storage;
  std::vector<TensorToWrite> to_write;
  storage.reserve(tensors.size());
  for (const auto& [name, dims] : tensors) {
    int64_t count = 1;
    for (int64_t d : dims) count *= d;
    std::vector<uint16_t>& bits = storage.emplace_back(static_cast<size_t>(count));
    const bool is_norm = name.find("norm") != std::string::npos;
    for (uint16_t& b : bits) b = cpu::f32_to_bf16(is_norm ? 1.0f + next_uniform() : next_uniform());
    to_write.push_back({name, shape.dtype, dims, std::as_bytes(std::span(bits))});
  }
  return write_safetensors(dir / "model.safetensors", to_write).ok();
}

}  // namespace bm::engine::testing
