#include "engine/models/decoder_weights.h"

#include <algorithm>
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

// The part of a tensor one tensor-parallel rank holds: rows [first, first + count) (a column-parallel layer's
// output features, or a vector's elements), or columns (a row-parallel layer's input features); count < 0: all.
struct Slice {
  int64_t first = 0;
  int64_t count = -1;
  bool columns = false;
};

// One checkpoint tensor to load: where it comes from, the shape it must have in the checkpoint and the slice this
// rank holds.
struct Part {
  std::string name;
  std::vector<int64_t> shape;
  const TensorInfo* source = nullptr;
  Slice slice;

  int64_t rows() const { return shape.size() == 2 ? shape[0] : 1; }
  int64_t cols() const { return shape.back(); }
  // The held part's [rows, cols] (a vector is one row, sliced by elements).
  int64_t held_rows() const { return slice.count < 0 || slice.columns || shape.size() == 1 ? rows() : slice.count; }
  int64_t held_cols() const { return slice.count < 0 || (!slice.columns && shape.size() == 2) ? cols() : slice.count; }
  // The held bytes: a view of the mapped file for whole tensors and row slices, gathered into `scratch` for column
  // slices (one row-parallel weight at a time, never the whole checkpoint).
  std::span<const std::byte> held_bytes(std::vector<std::byte>& scratch) const {
    const int64_t element = dtype_size(source->dtype);
    if (slice.count < 0) return source->data;
    if (!slice.columns)  // a vector's elements, or whole rows of a matrix
      return source->data.subspan(static_cast<size_t>(slice.first * (shape.size() == 1 ? 1 : cols()) * element),
                                  static_cast<size_t>(held_rows() * held_cols() * element));
    scratch.resize(static_cast<size_t>(rows() * slice.count * element));
    for (int64_t r = 0; r < rows(); ++r)
      std::memcpy(scratch.data() + r * slice.count * element,
                  source->data.data() + (r * cols() + slice.first) * element,
                  static_cast<size_t>(slice.count * element));
    return scratch;
  }
};

// One backend tensor: its parts one after the other (matrices stacked by rows, vectors joined) — one part, but for
// the fused weights (q|k|v, gate|up and their biases) — and where its view goes.
struct Placement {
  std::vector<Part> parts;
  Tensor* destination;
  int64_t offset = 0;
  bool linear_weight = false;  // read only by Backend::linear, so the backend may pack it

  DType dtype() const { return parts.front().source->dtype; }
  bool is_vector() const { return parts.front().shape.size() == 1; }
  int64_t held_rows() const {
    if (is_vector()) return 1;
    int64_t rows = 0;
    for (const Part& part : parts) rows += part.held_rows();
    return rows;
  }
  int64_t held_cols() const {
    if (!is_vector()) return parts.front().held_cols();
    int64_t cols = 0;
    for (const Part& part : parts) cols += part.held_cols();
    return cols;
  }
  // The held bytes of every part, in order: a part's own (held_bytes) when there is one, else joined in `joined`
  // (a fused weight is stacked on the host so that the backend lays it out as one matrix: the CPU backend packs it).
  std::span<const std::byte> held_bytes(std::vector<std::byte>& scratch, std::vector<std::byte>& joined) const {
    if (parts.size() == 1) return parts.front().held_bytes(scratch);
    joined.clear();
    for (const Part& part : parts) {
      const std::span<const std::byte> bytes = part.held_bytes(scratch);
      joined.insert(joined.end(), bytes.begin(), bytes.end());
    }
    return joined;
  }
};

// A GPTQ/AWQ linear layer: its packed tensors and where the backend's repacked form goes.
struct QuantizedPlacement {
  std::string prefix;
  int64_t out_features = 0;
  int64_t in_features = 0;
  LinearWeights* destination = nullptr;
  QuantizedSlice slice;
  QuantizedLayerTensors tensors;
  QuantizedShape shape;
  int64_t offset = 0;
  int64_t bytes = 0;
};

class PlacementList {
 public:
  PlacementList(const std::optional<QuantScheme>& quantization, int32_t ranks, bool fuse)
      : quantization_(quantization), ranks_(ranks), fuse_(fuse) {}

  void add(std::string name, std::vector<int64_t> shape, Tensor* destination, bool linear_weight = false,
           Slice slice = {}) {
    placements_.push_back(
        Placement{{Part{std::move(name), std::move(shape), nullptr, slice}}, destination, 0, linear_weight});
  }
  // How a linear layer is split over tensor-parallel ranks (docs/tensor-parallel.md): whole, by output features
  // (column-parallel: its bias split the same way), or by input features (row-parallel: the partial outputs are
  // summed by an all-reduce, so the bias is added by rank 0 alone).
  enum class Split { kWhole, kOutputs, kInputs };
  void add_linear(const std::string& prefix, int64_t out_features, int64_t in_features, bool has_bias,
                  LinearWeights* linear, Split split = Split::kWhole, int64_t first = 0, int64_t count = -1,
                  bool rank0 = true) {
    if (quantization_ && is_quantized_module(*quantization_, prefix)) {
      // The same split of the packed tensors (convert_quantized_layer checks that it falls on whole words/groups).
      using Dim = QuantizedSlice::Dim;
      const Dim dim = split == Split::kWhole ? Dim::kWhole : split == Split::kOutputs ? Dim::kOutputs : Dim::kInputs;
      quantized_.push_back(
          QuantizedPlacement{prefix, out_features, in_features, linear, QuantizedSlice{dim, first, count, ranks_}});
    } else {
      const Slice slice = split == Split::kWhole ? Slice{} : Slice{first, count, split == Split::kInputs};
      add(prefix + ".weight", {out_features, in_features}, &linear->weight, /*linear_weight=*/true, slice);
    }
    if (!has_bias) return;
    if (split == Split::kOutputs)
      add(prefix + ".bias", {out_features}, &linear->bias, false, Slice{first, count, false});
    else if (split == Split::kWhole || rank0)
      add(prefix + ".bias", {out_features}, &linear->bias);
  }
  // Column-parallel layers that read the same input, as one layer whose output features are theirs one after the
  // other (q|k|v, gate|up: one GEMM instead of several) in `fused`, each split over the ranks as add_linear splits
  // it — so a rank's fused weight is its own slices stacked. Quantized layers stay apart (`alone` of each), and
  // every layer when the list does not fuse.
  struct FusedPart {
    std::string prefix;
    int64_t out_features = 0;
    int64_t first = 0;
    int64_t count = -1;
    LinearWeights* alone = nullptr;
  };
  void add_fused_linear(const std::vector<FusedPart>& parts, int64_t in_features, bool has_bias, LinearWeights* fused,
                        Split split) {
    BM_CHECK(split != Split::kInputs);
    const bool quantized = quantization_ && std::any_of(parts.begin(), parts.end(), [&](const FusedPart& part) {
                             return is_quantized_module(*quantization_, part.prefix);
                           });
    if (quantized || !fuse_) {
      for (const FusedPart& part : parts)
        add_linear(part.prefix, part.out_features, in_features, has_bias, part.alone, split, part.first, part.count);
      return;
    }
    Placement weight{{}, &fused->weight, 0, /*linear_weight=*/true};
    Placement bias{{}, &fused->bias, 0, false};
    for (const FusedPart& part : parts) {
      const Slice slice = split == Split::kWhole ? Slice{} : Slice{part.first, part.count, false};
      weight.parts.push_back(Part{part.prefix + ".weight", {part.out_features, in_features}, nullptr, slice});
      bias.parts.push_back(Part{part.prefix + ".bias", {part.out_features}, nullptr, slice});
    }
    placements_.push_back(std::move(weight));
    if (has_bias) placements_.push_back(std::move(bias));
  }
  std::vector<Placement>& placements() { return placements_; }
  std::vector<QuantizedPlacement>& quantized() { return quantized_; }

 private:
  const std::optional<QuantScheme>& quantization_;
  int32_t ranks_;
  bool fuse_;
  std::vector<Placement> placements_;
  std::vector<QuantizedPlacement> quantized_;
};

std::string shape_text(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::Status find_and_check(const Checkpoint& checkpoint, Part& part, bool allow_f16) {
  part.source = checkpoint.find(part.name);
  if (part.source == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("the checkpoint has no tensor '", part.name, "'"));
  }
  if (part.source->shape != part.shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", part.name, "' has shape ", shape_text(part.source->shape),
                                                   " but config.json implies ", shape_text(part.shape)));
  }
  const DType dtype = part.source->dtype;
  if (dtype != DType::kBF16 && dtype != DType::kF32 && !(allow_f16 && dtype == DType::kF16)) {
    return absl::UnimplementedError(absl::StrCat(
        "tensor '", part.name, "' has dtype ", std::string(dtype_name(dtype)), "; only BF16 and F32 weights",
        allow_f16 ? ", and F16," : "", " are supported", allow_f16 ? "" : " on this backend"));
  }
  return absl::OkStatus();
}

absl::Status find_and_check(const Checkpoint& checkpoint, Placement& placement, bool allow_f16) {
  for (Part& part : placement.parts)
    if (absl::Status status = find_and_check(checkpoint, part, allow_f16); !status.ok()) return status;
  // A fused weight is one tensor of one dtype (every checkpoint we know stores a layer's projections alike).
  for (const Part& part : placement.parts)
    if (part.source->dtype != placement.dtype())
      return absl::UnimplementedError(absl::StrCat("tensor '", part.name, "' has dtype ",
                                                   std::string(dtype_name(part.source->dtype)), " but '",
                                                   placement.parts.front().name, "', fused with it, has ",
                                                   std::string(dtype_name(placement.dtype()))));
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

// The sharding table: Megatron-style, one all-reduce after each row-parallel layer (o_proj, down_proj). Query
// heads, the MLP's intermediate features and — while the ranks are no more than the KV heads — the KV heads are
// split; above that each rank holds one KV head, replicated. Embedding table and norms are replicated; the lm_head
// is held by rank 0 alone, which alone computes logits (docs/tensor-parallel.md says why).
void plan(const DecoderSpec& spec, const Shard& shard, const std::string& model_prefix, DecoderWeights& weights,
          PlacementList& list) {
  using Split = PlacementList::Split;
  const int64_t hidden = spec.hidden_size, hd = spec.head_dim;
  const int64_t q_size = int64_t{spec.num_heads} * hd;
  const int64_t kv_size = int64_t{spec.num_kv_heads} * hd;
  const bool sharded = shard.size > 1;
  const Split outputs = sharded ? Split::kOutputs : Split::kWhole, inputs = sharded ? Split::kInputs : Split::kWhole;
  const int64_t q_held = q_size / shard.size, q_first = shard.rank * q_held;
  const int64_t kv_held = Shard::kv_heads_per_rank(spec.num_kv_heads, shard.size) * hd;
  const int64_t kv_first = int64_t{shard.first_kv_head(spec.num_kv_heads)} * hd;
  const int64_t ff_held = spec.intermediate_size / shard.size, ff_first = shard.rank * ff_held;
  const bool rank0 = shard.rank == 0;
  // A tied table is also the head's weight: loaded as a linear weight, so the backend may pack it for its GEMM (the
  // head is the largest single read of a decode step at 0.5B–3B) and gathers embedding rows from that layout.
  list.add(model_prefix + "embed_tokens.weight", {spec.vocab_size, hidden}, &weights.embed_tokens,
           /*linear_weight=*/spec.tie_word_embeddings);
  weights.layers.resize(static_cast<size_t>(spec.num_layers));
  for (int32_t i = 0; i < spec.num_layers; ++i) {
    LayerWeights& layer = weights.layers[static_cast<size_t>(i)];
    const std::string prefix = absl::StrCat(model_prefix, "layers.", i, ".");
    list.add(prefix + "input_layernorm.weight", {hidden}, &layer.input_norm);
    list.add_fused_linear({{prefix + "self_attn.q_proj", q_size, q_first, q_held, &layer.q},
                           {prefix + "self_attn.k_proj", kv_size, kv_first, kv_held, &layer.k},
                           {prefix + "self_attn.v_proj", kv_size, kv_first, kv_held, &layer.v}},
                          hidden, spec.qkv_bias, &layer.qkv, outputs);
    list.add_linear(prefix + "self_attn.o_proj", hidden, q_size, spec.o_bias, &layer.o, inputs, q_first, q_held, rank0);
    list.add(prefix + "post_attention_layernorm.weight", {hidden}, &layer.post_attention_norm);
    list.add_fused_linear({{prefix + "mlp.gate_proj", spec.intermediate_size, ff_first, ff_held, &layer.gate},
                           {prefix + "mlp.up_proj", spec.intermediate_size, ff_first, ff_held, &layer.up}},
                          hidden, spec.mlp_bias, &layer.gate_up, outputs);
    list.add_linear(prefix + "mlp.down_proj", hidden, spec.intermediate_size, spec.mlp_bias, &layer.down, inputs,
                    ff_first, ff_held, rank0);
  }
  list.add(model_prefix + "norm.weight", {hidden}, &weights.final_norm);
  if (!spec.tie_word_embeddings && rank0) {
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
                                                                     const DecoderSpec& spec, Backend& backend,
                                                                     const Shard& shard, bool fuse) {
  if (absl::StatusOr<DecoderSpec> held = shard_decoder_spec(spec, shard.size); !held.ok()) return held.status();
  BM_CHECK(shard.rank >= 0 && shard.rank < shard.size);
  auto weights = std::make_unique<DecoderWeights>();
  PlacementList list(spec.quantization, shard.size, fuse);
  plan(spec, shard, language_model_prefix(checkpoint), *weights, list);
  // F16 is what GPTQ/AWQ checkpoints keep their float tensors in (embeddings, norms, biases, lm_head). The CPU
  // kernels read it; other backends get it as BF16 (rounded to nearest even, the range is BF16's), the dtype their
  // dense kernels run, so the lm_head of an int4 model costs what a BF16 model's does.
  const bool keep_f16 = backend.name() == "cpu";
  int64_t total = 0;
  for (Placement& placement : list.placements()) {
    if (absl::Status status = find_and_check(checkpoint, placement, /*allow_f16=*/true); !status.ok()) return status;
    placement.offset = total;
    total += aligned(placement.held_rows() * placement.held_cols() * dtype_size(placement.dtype()));
  }
  int64_t quantized_total = 0;
  for (QuantizedPlacement& placement : list.quantized()) {
    absl::StatusOr<QuantizedLayerTensors> tensors = find_quantized_layer(
        checkpoint, *spec.quantization, placement.prefix, placement.out_features, placement.in_features);
    if (!tensors.ok()) return tensors.status();
    placement.tensors = std::move(*tensors);
    absl::StatusOr<QuantizedLayerSource> checked =
        convert_quantized_layer(placement.tensors, *spec.quantization, /*with_weights=*/false, placement.slice);
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
  std::vector<std::byte> scratch, joined;
  for (const Placement& placement : list.placements()) {
    const bool to_bf16 = placement.dtype() == DType::kF16 && !keep_f16;
    *placement.destination = Tensor{weights->storage.get(), placement.offset,
                                    to_bf16 ? DType::kBF16 : placement.dtype(), placement.held_rows(),
                                    placement.held_cols()};
    const std::span<const std::byte> bytes = placement.held_bytes(scratch, joined);
    if (to_bf16) {
      const std::vector<uint16_t> bf16 = f16_to_bf16(bytes);
      backend.copy_to_device(std::as_bytes(std::span(bf16)), *placement.destination);
    } else if (placement.linear_weight) {
      backend.copy_linear_weight_to_device(bytes, *placement.destination);
    } else {
      backend.copy_to_device(bytes, *placement.destination);
    }
  }
  for (const QuantizedPlacement& placement : list.quantized()) {
    absl::StatusOr<QuantizedLayerSource> source =
        convert_quantized_layer(placement.tensors, *spec.quantization, /*with_weights=*/true, placement.slice);
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
