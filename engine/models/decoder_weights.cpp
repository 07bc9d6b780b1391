#include "engine/models/decoder_weights.h"

#include <bit>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"
#include "engine/models/quantized_layer.h"

namespace bm::engine {
namespace {

constexpr int64_t kAlignment = 256;

// One tensor to load: where it comes from, the shape it must have, and where its view goes.
struct Placement {
  std::string name;
  std::vector<int64_t> shape;
  Tensor* destination;
  const TensorInfo* source = nullptr;
  int64_t offset = 0;
  bool linear_weight = false;  // read only by Backend::linear, so the backend may pack it
};

// A GPTQ/AWQ linear layer: its packed tensors and where the backend's repacked form goes.
struct QuantizedPlacement {
  std::string prefix;
  int64_t out_features = 0;
  int64_t in_features = 0;
  LinearWeights* destination = nullptr;
  QuantizedLayerTensors tensors;
  QuantizedShape shape;
  int64_t offset = 0;
  int64_t bytes = 0;
};

class PlacementList {
 public:
  explicit PlacementList(const std::optional<QuantScheme>& quantization) : quantization_(quantization) {}

  void add(std::string name, std::vector<int64_t> shape, Tensor* destination, bool linear_weight = false) {
    placements_.push_back(Placement{std::move(name), std::move(shape), destination, nullptr, 0, linear_weight});
  }
  void add_linear(const std::string& prefix, int64_t out_features, int64_t in_features, bool has_bias,
                  LinearWeights* linear) {
    if (quantization_ && is_quantized_module(*quantization_, prefix)) {
      quantized_.push_back(QuantizedPlacement{prefix, out_features, in_features, linear});
    } else {
      add(prefix + ".weight", {out_features, in_features}, &linear->weight, /*linear_weight=*/true);
    }
    if (has_bias) add(prefix + ".bias", {out_features}, &linear->bias);
  }
  std::vector<Placement>& placements() { return placements_; }
  std::vector<QuantizedPlacement>& quantized() { return quantized_; }

 private:
  const std::optional<QuantScheme>& quantization_;
  std::vector<Placement> placements_;
  std::vector<QuantizedPlacement> quantized_;
};

std::string shape_text(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::Status find_and_check(const Checkpoint& checkpoint, Placement& placement, bool allow_f16) {
  placement.source = checkpoint.find(placement.name);
  if (placement.source == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("the checkpoint has no tensor '", placement.name, "'"));
  }
  if (placement.source->shape != placement.shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", placement.name, "' has shape ",
                                                   shape_text(placement.source->shape), " but config.json implies ",
                                                   shape_text(placement.shape)));
  }
  const DType dtype = placement.source->dtype;
  if (dtype != DType::kBF16 && dtype != DType::kF32 && !(allow_f16 && dtype == DType::kF16)) {
    return absl::UnimplementedError(absl::StrCat(
        "tensor '", placement.name, "' has dtype ", std::string(dtype_name(dtype)), "; only BF16 and F32 weights",
        allow_f16 ? ", and F16," : "", " are supported", allow_f16 ? "" : " on this backend"));
  }
  return absl::OkStatus();
}

// Where the decoder's tensors live: "model." in Qwen2/Llama checkpoints and in Qwen2.5-VL's as published (beside
// "visual."); transformers 5 names a Qwen2.5-VL's language model "model.language_model." in memory and may save it
// so. The head is "lm_head." in all of them. The first prefix whose embedding table is present wins.
constexpr std::string_view kLanguageModelPrefixes[] = {"model.", "model.language_model."};

std::string language_model_prefix(const Checkpoint& checkpoint) {
  for (const std::string_view prefix : kLanguageModelPrefixes) {
    if (checkpoint.find(std::string(prefix) + "embed_tokens.weight") != nullptr) return std::string(prefix);
  }
  return std::string(kLanguageModelPrefixes[0]);  // the missing-tensor error then names the usual name
}

void plan(const DecoderSpec& spec, const std::string& model_prefix, DecoderWeights& weights, PlacementList& list) {
  const int64_t hidden = spec.hidden_size;
  const int64_t q_size = int64_t{spec.num_heads} * spec.head_dim;
  const int64_t kv_size = int64_t{spec.num_kv_heads} * spec.head_dim;
  list.add(model_prefix + "embed_tokens.weight", {spec.vocab_size, hidden}, &weights.embed_tokens);
  weights.layers.resize(static_cast<size_t>(spec.num_layers));
  for (int32_t i = 0; i < spec.num_layers; ++i) {
    LayerWeights& layer = weights.layers[static_cast<size_t>(i)];
    const std::string prefix = absl::StrCat(model_prefix, "layers.", i, ".");
    list.add(prefix + "input_layernorm.weight", {hidden}, &layer.input_norm);
    list.add_linear(prefix + "self_attn.q_proj", q_size, hidden, spec.qkv_bias, &layer.q);
    list.add_linear(prefix + "self_attn.k_proj", kv_size, hidden, spec.qkv_bias, &layer.k);
    list.add_linear(prefix + "self_attn.v_proj", kv_size, hidden, spec.qkv_bias, &layer.v);
    list.add_linear(prefix + "self_attn.o_proj", hidden, q_size, spec.o_bias, &layer.o);
    list.add(prefix + "post_attention_layernorm.weight", {hidden}, &layer.post_attention_norm);
    list.add_linear(prefix + "mlp.gate_proj", spec.intermediate_size, hidden, spec.mlp_bias, &layer.gate);
    list.add_linear(prefix + "mlp.up_proj", spec.intermediate_size, hidden, spec.mlp_bias, &layer.up);
    list.add_linear(prefix + "mlp.down_proj", hidden, spec.intermediate_size, spec.mlp_bias, &layer.down);
  }
  list.add(model_prefix + "norm.weight", {hidden}, &weights.final_norm);
  if (!spec.tie_word_embeddings) {
    list.add("lm_head.weight", {spec.vocab_size, hidden}, &weights.lm_head, /*linear_weight=*/true);
  }
}

int64_t aligned(int64_t bytes) {
  return (bytes + kAlignment - 1) / kAlignment * kAlignment;
}

}  // namespace

std::vector<uint16_t> f16_to_bf16(std::span<const std::byte> f16) {
  BM_CHECK(f16.size() % 2 == 0);
  std::vector<uint16_t> out(f16.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t bits;
    std::memcpy(&bits, f16.data() + 2 * i, 2);
    const uint32_t wide = std::bit_cast<uint32_t>(f16_to_f32(bits));  // exact
    if ((wide & 0x7f800000u) == 0x7f800000u && (wide & 0x007fffffu) != 0) {
      out[i] = static_cast<uint16_t>((wide >> 16) | 0x40u);  // NaN stays NaN (quiet)
    } else {
      out[i] = static_cast<uint16_t>((wide + 0x7fffu + ((wide >> 16) & 1u)) >> 16);  // round to nearest even
    }
  }
  return out;
}

void apply_linear(Backend& backend, const Tensor& x, const LinearWeights& linear, const Tensor& out) {
  if (linear.is_quantized()) {
    backend.quantized_linear(x, linear.quantized, linear.bias_or_null(), out);
  } else {
    backend.linear(x, linear.weight, linear.bias_or_null(), out);
  }
}

absl::StatusOr<std::unique_ptr<DecoderWeights>> load_decoder_weights(const Checkpoint& checkpoint,
                                                                     const DecoderSpec& spec, Backend& backend) {
  auto weights = std::make_unique<DecoderWeights>();
  PlacementList list(spec.quantization);
  plan(spec, language_model_prefix(checkpoint), *weights, list);
  // F16 is what GPTQ/AWQ checkpoints keep their float tensors in (embeddings, norms, biases, lm_head). The CPU
  // kernels read it; other backends get it as BF16 (rounded to nearest even, the range is BF16's), the dtype their
  // dense kernels run, so the lm_head of an int4 model costs what a BF16 model's does.
  const bool keep_f16 = backend.name() == "cpu";
  int64_t total = 0;
  for (Placement& placement : list.placements()) {
    if (absl::Status status = find_and_check(checkpoint, placement, /*allow_f16=*/true); !status.ok()) return status;
    placement.offset = total;
    total += aligned(static_cast<int64_t>(placement.source->data.size()));
  }
  int64_t quantized_total = 0;
  for (QuantizedPlacement& placement : list.quantized()) {
    absl::StatusOr<QuantizedLayerTensors> tensors = find_quantized_layer(
        checkpoint, *spec.quantization, placement.prefix, placement.out_features, placement.in_features);
    if (!tensors.ok()) return tensors.status();
    placement.tensors = std::move(*tensors);
    absl::StatusOr<QuantizedLayerSource> checked =
        convert_quantized_layer(placement.tensors, *spec.quantization, /*with_weights=*/false);
    if (!checked.ok()) return checked.status();
    placement.shape = checked->shape;
    absl::StatusOr<int64_t> bytes = backend.quantized_matrix_bytes(placement.shape);
    if (!bytes.ok()) return bytes.status();
    placement.offset = total;
    placement.bytes = *bytes;
    total += aligned(*bytes);
    quantized_total += aligned(*bytes);
  }
  absl::StatusOr<std::unique_ptr<Buffer>> storage = backend.allocate(total);
  if (!storage.ok()) return storage.status();
  weights->storage = std::move(*storage);
  for (const Placement& placement : list.placements()) {
    const std::vector<int64_t>& shape = placement.shape;
    const bool to_bf16 = placement.source->dtype == DType::kF16 && !keep_f16;
    *placement.destination =
        Tensor{weights->storage.get(), placement.offset, to_bf16 ? DType::kBF16 : placement.source->dtype,
               shape.size() == 2 ? shape[0] : 1, shape.back()};
    if (to_bf16) {
      const std::vector<uint16_t> bf16 = f16_to_bf16(placement.source->data);
      backend.copy_to_device(std::as_bytes(std::span(bf16)), *placement.destination);
    } else if (placement.linear_weight) {
      backend.copy_linear_weight_to_device(placement.source->data, *placement.destination);
    } else {
      backend.copy_to_device(placement.source->data, *placement.destination);
    }
  }
  for (const QuantizedPlacement& placement : list.quantized()) {
    absl::StatusOr<QuantizedLayerSource> source =
        convert_quantized_layer(placement.tensors, *spec.quantization, /*with_weights=*/true);
    BM_CHECK(source.ok());  // the same checks passed above, on the same bytes
    placement.destination->quantized = QuantizedMatrix{
        placement.shape, Tensor{weights->storage.get(), placement.offset, DType::kU8, 1, placement.bytes}};
    backend.copy_quantized_to_device(source->view(), placement.destination->quantized);
  }
  if (spec.tie_word_embeddings) weights->lm_head = weights->embed_tokens;
  weights->num_bytes = total;
  weights->quantized_bytes = quantized_total;
  return weights;
}

}  // namespace bm::engine
