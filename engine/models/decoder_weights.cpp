#include "engine/models/decoder_weights.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

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
};

class PlacementList {
 public:
  void add(std::string name, std::vector<int64_t> shape, Tensor* destination) {
    placements_.push_back(Placement{std::move(name), std::move(shape), destination});
  }
  void add_linear(const std::string& prefix, int64_t out_features, int64_t in_features, bool has_bias,
                  LinearWeights* linear) {
    add(prefix + ".weight", {out_features, in_features}, &linear->weight);
    if (has_bias) add(prefix + ".bias", {out_features}, &linear->bias);
  }
  std::vector<Placement>& placements() { return placements_; }

 private:
  std::vector<Placement> placements_;
};

std::string shape_text(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::Status find_and_check(const Checkpoint& checkpoint, Placement& placement) {
  placement.source = checkpoint.find(placement.name);
  if (placement.source == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("the checkpoint has no tensor '", placement.name, "'"));
  }
  if (placement.source->shape != placement.shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", placement.name, "' has shape ",
                                                   shape_text(placement.source->shape), " but config.json implies ",
                                                   shape_text(placement.shape)));
  }
  if (placement.source->dtype != DType::kBF16 && placement.source->dtype != DType::kF32) {
    return absl::UnimplementedError(absl::StrCat("tensor '", placement.name, "' has dtype ",
                                                 std::string(dtype_name(placement.source->dtype)),
                                                 "; only BF16 and F32 weights are supported"));
  }
  return absl::OkStatus();
}

void plan(const DecoderSpec& spec, DecoderWeights& weights, PlacementList& list) {
  const int64_t hidden = spec.hidden_size;
  const int64_t q_size = int64_t{spec.num_heads} * spec.head_dim;
  const int64_t kv_size = int64_t{spec.num_kv_heads} * spec.head_dim;
  list.add("model.embed_tokens.weight", {spec.vocab_size, hidden}, &weights.embed_tokens);
  weights.layers.resize(static_cast<size_t>(spec.num_layers));
  for (int32_t i = 0; i < spec.num_layers; ++i) {
    LayerWeights& layer = weights.layers[static_cast<size_t>(i)];
    const std::string prefix = absl::StrCat("model.layers.", i, ".");
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
  list.add("model.norm.weight", {hidden}, &weights.final_norm);
  if (!spec.tie_word_embeddings) list.add("lm_head.weight", {spec.vocab_size, hidden}, &weights.lm_head);
}

}  // namespace

absl::StatusOr<std::unique_ptr<DecoderWeights>> load_decoder_weights(const Checkpoint& checkpoint,
                                                                     const DecoderSpec& spec, Backend& backend) {
  auto weights = std::make_unique<DecoderWeights>();
  PlacementList list;
  plan(spec, *weights, list);
  int64_t total = 0;
  for (Placement& placement : list.placements()) {
    if (absl::Status status = find_and_check(checkpoint, placement); !status.ok()) return status;
    placement.offset = total;
    total += (static_cast<int64_t>(placement.source->data.size()) + kAlignment - 1) / kAlignment * kAlignment;
  }
  absl::StatusOr<std::unique_ptr<Buffer>> storage = backend.allocate(total);
  if (!storage.ok()) return storage.status();
  weights->storage = std::move(*storage);
  for (const Placement& placement : list.placements()) {
    const std::vector<int64_t>& shape = placement.shape;
    *placement.destination = Tensor{weights->storage.get(), placement.offset, placement.source->dtype,
                                    shape.size() == 2 ? shape[0] : 1, shape.back()};
    backend.copy_to_device(placement.source->data, *placement.destination);
  }
  if (spec.tie_word_embeddings) weights->lm_head = weights->embed_tokens;
  weights->num_bytes = total;
  return weights;
}

}  // namespace bm::engine
