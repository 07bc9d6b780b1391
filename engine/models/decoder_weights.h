#pragma once
// The weights of a DecoderLM on a backend, in one buffer. Loading checks every tensor the spec needs (present,
// BF16, F32 or F16 — F16 kept on the cpu backend, BF16 on the others —, the shape the config implies; for GPTQ/AWQ
// layers also the packed tensors' shapes and the zero-points and g_idx values) before it allocates anything, so a bad
// checkpoint fails with the tensor's name and nothing is left half-loaded. Quantized layers stay packed (the backend's
// layout).
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/model/checkpoint.h"
#include "engine/models/decoder_spec.h"

namespace bm::engine {

struct LinearWeights {
  Tensor weight;              // [out_features, in_features]; unset when the layer is quantized
  QuantizedMatrix quantized;  // GPTQ / AWQ layers: quantized.data.buffer != nullptr
  Tensor bias;                // [1, out_features]; bias.buffer == nullptr when the layer has none

  bool is_quantized() const { return quantized.data.buffer != nullptr; }
  bool present() const { return weight.buffer != nullptr || is_quantized(); }
  const Tensor* bias_or_null() const { return bias.buffer != nullptr ? &bias : nullptr; }
};

// F16 bits → BF16 bits, rounded to nearest even (NaN stays NaN): how a backend without F16 kernels receives the
// float tensors of GPTQ/AWQ checkpoints.
std::vector<uint16_t> f16_to_bf16(std::span<const std::byte> f16);

// out = x · Wᵀ (+ bias) on whichever form the layer has.
void apply_linear(Backend& backend, const Tensor& x, const LinearWeights& linear, const Tensor& out);

// The projections that read the same input are fused at load, one matrix whose output features are theirs one after
// the other: qkv = q|k|v [q + 2 kv, hidden] (Backend::rope_store_kv takes its output apart) and gate_up = gate|up
// [2 intermediate, hidden] (Backend::silu_mul_fused), one GEMM each instead of three and two. Quantized (GPTQ/AWQ)
// projections stay apart in q, k, v and gate, up; the fused ones are then absent (present() false).
struct LayerWeights {
  Tensor input_norm;
  LinearWeights qkv, q, k, v, o;
  Tensor post_attention_norm;
  LinearWeights gate_up, gate, up, down;
};

struct DecoderWeights {
  std::unique_ptr<Buffer> storage;
  Tensor embed_tokens;  // [vocab, hidden]
  Tensor final_norm;
  Tensor lm_head;  // the embedding table itself when tied
  std::vector<LayerWeights> layers;
  int64_t num_bytes = 0;
  int64_t quantized_bytes = 0;  // of num_bytes, what the quantized layers take in the backend's layout
};

// spec: the whole model's. shard: the tensor-parallel rank whose slices to load (decoder_weights.cpp's plan holds
// the sharding table); the default is the whole model. A rank other than 0 holds no lm_head. fuse: load q/k/v and
// gate/up fused where they are not quantized (LayerWeights); false keeps every projection apart.
absl::StatusOr<std::unique_ptr<DecoderWeights>> load_decoder_weights(const Checkpoint& checkpoint,
                                                                     const DecoderSpec& spec, Backend& backend,
                                                                     const Shard& shard = {}, bool fuse = true);

}  // namespace bm::engine
