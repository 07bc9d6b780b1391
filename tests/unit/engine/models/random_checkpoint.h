#pragma once
// Writes a Llama-family checkpoint with random BF16 weights (config.json + model.safetensors) for tests and the
// CPU benchmark. The tensor names and shapes are the Hugging Face ones for the given sizes. With `quantization`
// set, the linear layers are written as a GPTQ or AWQ checkpoint would hold them (random packed integers, F16
// scales around 0.01, valid zero-points and g_idx) and every other tensor in F16, as the published ones are.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
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
  DType dtype = DType::kBF16;  // of every float tensor
  std::string quantization;    // "", "gptq-int4", "gptq-int8", "awq-int4"
  int32_t group_size = 32;
  bool desc_act = false;  // GPTQ: random act-order g_idx
  // Bad-input knobs for the loader tests.
  bool write_g_idx = true;
  DType scales_dtype = DType::kF16;
  uint32_t gptq_zero_word = 0;  // 0: the symmetric zero-point in every field
  uint32_t g_idx_shift = 0;     // added to every g_idx entry
};

inline std::string random_checkpoint_quantization_config(const RandomCheckpointShape& shape) {
  if (shape.quantization.empty()) return "";
  if (shape.quantization == "awq-int4") {
    return absl::StrCat(R"("quantization_config": {"quant_method": "awq", "bits": 4, "group_size": )", shape.group_size,
                        R"(, "version": "gemm", "zero_point": true}, )");
  }
  return absl::StrCat(R"("quantization_config": {"quant_method": "gptq", "bits": )",
                      shape.quantization == "gptq-int8" ? 8 : 4, R"(, "group_size": )", shape.group_size,
                      R"(, "desc_act": )", shape.desc_act ? "true" : "false", R"(, "sym": true}, )");
}

// The config's model_type, which Hugging Face's loaders (and vLLM, which a perf script serves these with) key on.
inline std::string random_checkpoint_model_type(const RandomCheckpointShape& shape) {
  return shape.architecture == "LlamaForCausalLM" ? "llama" : "qwen2";
}

inline std::string random_checkpoint_config(const RandomCheckpointShape& shape) {
  return absl::StrCat(R"({"architectures": [")", shape.architecture, R"("], "model_type": ")",
                      random_checkpoint_model_type(shape), R"(", "hidden_size": )", shape.hidden_size,
                      R"(, "intermediate_size": )", shape.intermediate_size, R"(, "num_hidden_layers": )",
                      shape.num_layers, R"(, "num_attention_heads": )", shape.num_heads, R"(, "num_key_value_heads": )",
                      shape.num_kv_heads, R"(, "vocab_size": )", shape.vocab_size,
                      R"(, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,)",
                      R"( "hidden_act": "silu", "tie_word_embeddings": )", shape.tie_word_embeddings ? "true" : "false",
                      ", ", random_checkpoint_quantization_config(shape), R"("torch_dtype": "bfloat16"})");
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
  const bool quantized = !shape.quantization.empty();
  const DType dtype = quantized ? DType::kF16 : shape.dtype;
  const auto to_bits = [dtype](float value) -> uint16_t {
    if (dtype != DType::kF16) return cpu::f32_to_bf16(value);
    const _Float16 half = static_cast<_Float16>(value);
    uint16_t bits;
    std::memcpy(&bits, &half, sizeof(bits));
    return bits;
  };
  std::vector<std::vector<uint16_t>> storage;
  std::vector<std::vector<uint32_t>> int_storage;
  std::vector<TensorToWrite> to_write;
  storage.reserve(tensors.size() * 2);
  int_storage.reserve(tensors.size() * 3);
  std::mt19937 rng(seed);
  for (const auto& [name, dims] : tensors) {
    const bool is_linear = dims.size() == 2 && name.rfind("model.layers.", 0) == 0;
    if (quantized && is_linear) {  // dims = [out, in]
      const std::string prefix = name.substr(0, name.size() - std::string(".weight").size());
      const int64_t out = dims[0], in = dims[1], groups = in / shape.group_size;
      const bool awq = shape.quantization == "awq-int4";
      const int bits = shape.quantization == "gptq-int8" ? 8 : 4;
      const int64_t per_word = 32 / bits;
      std::vector<uint32_t>& qweight = int_storage.emplace_back(static_cast<size_t>(in * out / per_word));
      for (uint32_t& w : qweight) w = static_cast<uint32_t>(rng());
      std::vector<uint32_t>& qzeros = int_storage.emplace_back(static_cast<size_t>(groups * out / per_word));
      const uint32_t sym_word =
          shape.gptq_zero_word != 0 ? shape.gptq_zero_word : (bits == 4 ? 0x77777777u : 0x7f7f7f7fu);
      for (uint32_t& z : qzeros) z = awq ? static_cast<uint32_t>(rng()) : sym_word;
      std::vector<uint16_t>& scales = storage.emplace_back(static_cast<size_t>(groups * out));
      for (uint16_t& b : scales) b = to_bits((bits == 4 ? 0.01f : 0.0006f) * (1.5f + 10.0f * next_uniform()));
      to_write.push_back({prefix + ".qweight", DType::kI32,
                          awq ? std::vector<int64_t>{in, out / 8} : std::vector<int64_t>{in / per_word, out},
                          std::as_bytes(std::span(qweight))});
      to_write.push_back({prefix + ".qzeros", DType::kI32, {groups, out / per_word}, std::as_bytes(std::span(qzeros))});
      to_write.push_back({prefix + ".scales", shape.scales_dtype, {groups, out}, std::as_bytes(std::span(scales))});
      if (!awq && shape.write_g_idx) {
        std::vector<uint32_t>& g_idx = int_storage.emplace_back(static_cast<size_t>(in));
        std::vector<int32_t> order(static_cast<size_t>(in));
        std::iota(order.begin(), order.end(), 0);
        if (shape.desc_act) std::shuffle(order.begin(), order.end(), rng);
        for (int64_t i = 0; i < in; ++i)
          g_idx[static_cast<size_t>(order[i])] = static_cast<uint32_t>(i / shape.group_size) + shape.g_idx_shift;
        to_write.push_back({prefix + ".g_idx", DType::kI32, {in}, std::as_bytes(std::span(g_idx))});
      }
      continue;
    }
    int64_t count = 1;
    for (int64_t d : dims) count *= d;
    std::vector<uint16_t>& bits = storage.emplace_back(static_cast<size_t>(count));
    const bool is_norm = name.find("norm") != std::string::npos;
    for (uint16_t& b : bits) b = to_bits(is_norm ? 1.0f + next_uniform() : next_uniform());
    to_write.push_back({name, dtype, dims, std::as_bytes(std::span(bits))});
  }
  return write_safetensors(dir / "model.safetensors", to_write).ok();
}

}  // namespace bm::engine::testing
