#pragma once
// One linear layer of a GPTQ or AWQ checkpoint: its tensors found and checked against the shapes the config
// implies, then turned into the backend-neutral QuantizedMatrixSource (engine/backend/quantized_matrix.h). The
// two formats differ in where they pack (docs/quantization.md):
//   GPTQ  qweight [in / (32/bits), out] I32, packed along the input, lowest bits first;
//         qzeros  [groups, out / (32/bits)] I32, packed along the output, stored minus one in v1;
//         scales  [groups, out] F16; g_idx [in] I32, the group of every input (act-order when not i / group);
//   AWQ   qweight [in, out / 8] I32, packed along the output with nibble i holding column order[i] of each 8,
//         order = 0 2 4 6 1 3 5 7; qzeros [groups, out / 8] I32, same interleave, stored as is;
//         scales  [groups, out] F16.
// Every bad tensor is reported with its name and one sentence saying what is wrong.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/quantized_matrix.h"
#include "engine/model/checkpoint.h"
#include "engine/models/quant_scheme.h"

namespace bm::engine {

struct QuantizedLayerTensors {
  std::string prefix;  // "model.layers.0.mlp.down_proj"
  int64_t out_features = 0;
  int64_t in_features = 0;
  int32_t group_size = 0;  // the scheme's, or in_features for GPTQ's group_size -1
  const TensorInfo* qweight = nullptr;
  const TensorInfo* qzeros = nullptr;
  const TensorInfo* scales = nullptr;
  const TensorInfo* g_idx = nullptr;  // GPTQ, when the checkpoint has it
};

// The converted arrays, owned, and the neutral view of them.
struct QuantizedLayerSource {
  QuantizedShape shape;
  std::vector<uint32_t> qweight;  // empty when converted without weights
  std::vector<uint16_t> scales;
  std::vector<uint8_t> zeros;
  std::vector<int32_t> perm;

  QuantizedMatrixSource view() const { return QuantizedMatrixSource{shape, qweight, scales, zeros, perm}; }
};

// Finds `prefix`.qweight/.qzeros/.scales(/.g_idx) and checks their dtypes and shapes.
absl::StatusOr<QuantizedLayerTensors> find_quantized_layer(const Checkpoint& checkpoint, const QuantScheme& scheme,
                                                           const std::string& prefix, int64_t out_features,
                                                           int64_t in_features);

// The part of a layer one tensor-parallel rank holds (docs/quantization.md, "Tensor parallelism"): all of it, the
// output features [first, first + count) of a column-parallel layer, or the input features of a row-parallel one.
// `ranks` is the group's size, for the refusal's sentence.
struct QuantizedSlice {
  enum class Dim { kWhole, kOutputs, kInputs };
  Dim dim = Dim::kWhole;
  int64_t first = 0;
  int64_t count = 0;
  int32_t ranks = 1;
};

// Reads zero-points, scales and g_idx and checks their values (zero-points in range, sym's fixed zero-point, a
// g_idx that names valid groups of group_size inputs each); with `with_weights` also unpacks qweight into the
// neutral order. The loader calls it once without weights while it checks everything (before allocating), and
// once with them as it copies each layer. With a slice only that part of qweight, and of scales and qzeros but
// for an act-order row split (whose groups are scattered over the inputs), is read from the mapped file:
//   outputs: whole packed words, so the split must fall on a multiple of the values an int32 packs;
//   inputs:  whole groups, so the split must fall on a multiple of group_size; with act-order (a g_idx not in
//            input order) any split works: the rank's inputs are sorted by group and each group's piece padded
//            to whole packed groups of a size chosen to waste the fewest bytes, padding inputs reading zero
//            (QuantizedShape::padded_from), each packed group keeping its checkpoint group's scale and zero.
// A split that does not fit is one sentence naming the layer.
absl::StatusOr<QuantizedLayerSource> convert_quantized_layer(const QuantizedLayerTensors& tensors,
                                                             const QuantScheme& scheme, bool with_weights,
                                                             const QuantizedSlice& slice = {});

}  // namespace bm::engine
