#include "engine/models/quantized_layer.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace bm::engine {
namespace {

// AWQ's GEMM packing: nibble i of a word holds output column kAwqOrder[i] of its 8, so column c sits in nibble
// kAwqNibble[c] (AutoAWQ packs with the first table; its unpack reverses with the second).
constexpr std::array<int32_t, 8> kAwqNibble = {0, 4, 1, 5, 2, 6, 3, 7};

std::string shape_text(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<const TensorInfo*> find_tensor(const Checkpoint& checkpoint, const std::string& name,
                                              std::vector<int64_t> shape, DType dtype, std::string_view why) {
  const TensorInfo* tensor = checkpoint.find(name);
  if (tensor == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("the checkpoint has no tensor '", name,
                                                   "' (config.json quantizes this layer", std::string(why), ")"));
  }
  if (tensor->dtype != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "' has dtype ", std::string(dtype_name(tensor->dtype)), " but a quantized layer's ",
        name.substr(name.rfind('.') + 1), " must be ", std::string(dtype_name(dtype))));
  }
  if (tensor->shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has shape ", shape_text(tensor->shape),
                                                   " but config.json implies ", shape_text(shape)));
  }
  return tensor;
}

template <typename T>
std::vector<T> read_array(const TensorInfo& tensor) {
  std::vector<T> values(tensor.data.size() / sizeof(T));
  if (!values.empty()) std::memcpy(values.data(), tensor.data.data(), values.size() * sizeof(T));
  return values;
}

// Rows [first_row, first_row + rows) × columns [first_col, first_col + cols) of a 2-D tensor: a rank reads only
// its slice of the mapped file.
template <typename T>
std::vector<T> read_block(const TensorInfo& tensor, int64_t first_row, int64_t rows, int64_t first_col, int64_t cols) {
  const int64_t width = tensor.shape.back();
  std::vector<T> values(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(values.data() + r * cols, tensor.data.data() + ((first_row + r) * width + first_col) * sizeof(T),
                static_cast<size_t>(cols) * sizeof(T));
  }
  return values;
}

uint32_t field(uint32_t word, int32_t index, int32_t bits) {
  return (word >> (bits * index)) & ((uint32_t{1} << bits) - 1);
}

// The act-order permutation from g_idx, or empty when the inputs are already in group order.
absl::StatusOr<std::vector<int32_t>> permutation_from_g_idx(const QuantizedLayerTensors& t) {
  const std::vector<int32_t> g_idx = read_array<int32_t>(*t.g_idx);
  const int64_t groups = t.in_features / t.group_size;
  bool in_order = true;
  for (int64_t i = 0; i < t.in_features; ++i) {
    const int32_t g = g_idx[static_cast<size_t>(i)];
    if (g < 0 || g >= groups) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.g_idx->name, "' names group ", g, " at input ", i,
                                                     " but the layer has ", groups, " groups"));
    }
    in_order = in_order && g == i / t.group_size;
  }
  if (in_order) return std::vector<int32_t>{};
  std::vector<int32_t> perm(static_cast<size_t>(t.in_features));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int32_t a, int32_t b) { return g_idx[a] < g_idx[b]; });
  for (int64_t i = 0; i < t.in_features; ++i) {
    if (g_idx[static_cast<size_t>(perm[static_cast<size_t>(i)])] != i / t.group_size) {
      const int64_t g = i / t.group_size;
      const auto count = std::count(g_idx.begin(), g_idx.end(), static_cast<int32_t>(g));
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.g_idx->name, "' puts ", count, " inputs in group ",
                                                     g, " but every group must hold group_size (", t.group_size,
                                                     ") inputs"));
    }
  }
  return perm;
}

}  // namespace

absl::StatusOr<QuantizedLayerTensors> find_quantized_layer(const Checkpoint& checkpoint, const QuantScheme& scheme,
                                                           const std::string& prefix, int64_t out_features,
                                                           int64_t in_features) {
  QuantizedLayerTensors t;
  t.prefix = prefix;
  t.out_features = out_features;
  t.in_features = in_features;
  t.group_size = scheme.group_size > 0 ? scheme.group_size : static_cast<int32_t>(in_features);
  const int64_t per_word = 32 / scheme.bits;
  const std::string format = scheme.format == QuantFormat::kGptq ? "GPTQ" : "AWQ";
  if (in_features % t.group_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("layer '", prefix, "': group_size ", t.group_size,
                                                   " does not divide its input size ", in_features));
  }
  if (t.group_size % per_word != 0) {
    return absl::InvalidArgumentError(absl::StrCat("layer '", prefix, "': group_size ", t.group_size,
                                                   " is not a multiple of the ", per_word, " values an int32 packs"));
  }
  if (out_features % per_word != 0) {
    return absl::InvalidArgumentError(absl::StrCat("layer '", prefix, "': its output size ", out_features,
                                                   " is not a multiple of the ", per_word, " values an int32 packs"));
  }
  const int64_t groups = in_features / t.group_size;
  const std::vector<int64_t> qweight_shape = scheme.format == QuantFormat::kGptq
                                                 ? std::vector<int64_t>{in_features / per_word, out_features}
                                                 : std::vector<int64_t>{in_features, out_features / per_word};
  const std::string why = absl::StrCat(", ", format, " ", scheme.bits, "-bit");
  absl::StatusOr<const TensorInfo*> found =
      find_tensor(checkpoint, prefix + ".qweight", qweight_shape, DType::kI32, why);
  if (!found.ok()) return found.status();
  t.qweight = *found;
  found = find_tensor(checkpoint, prefix + ".qzeros", {groups, out_features / per_word}, DType::kI32, why);
  if (!found.ok()) return found.status();
  t.qzeros = *found;
  found = find_tensor(checkpoint, prefix + ".scales", {groups, out_features}, DType::kF16, why);
  if (!found.ok()) return found.status();
  t.scales = *found;
  if (scheme.format == QuantFormat::kGptq) {
    if (checkpoint.find(prefix + ".g_idx") != nullptr || scheme.desc_act) {
      found = find_tensor(checkpoint, prefix + ".g_idx", {in_features}, DType::kI32,
                          scheme.desc_act ? ", and desc_act: true needs g_idx" : "");
      if (!found.ok()) return found.status();
      t.g_idx = *found;
    }
  }
  return t;
}

absl::StatusOr<QuantizedLayerSource> convert_quantized_layer(const QuantizedLayerTensors& t, const QuantScheme& scheme,
                                                             bool with_weights, const QuantizedSlice& slice) {
  QuantizedLayerSource source;
  const int32_t bits = scheme.bits;
  const int32_t per_word = 32 / bits;
  const int64_t group_size = t.group_size;
  const bool gptq = scheme.format == QuantFormat::kGptq;
  const bool by_outputs = slice.dim == QuantizedSlice::Dim::kOutputs;
  const bool by_inputs = slice.dim == QuantizedSlice::Dim::kInputs;
  const int64_t out_first = by_outputs ? slice.first : 0, out = by_outputs ? slice.count : t.out_features;
  const int64_t in_first = by_inputs ? slice.first : 0, in = by_inputs ? slice.count : t.in_features;
  const auto refuse = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer '", t.prefix, "' cannot be split over ", slice.ranks, " tensor-parallel ranks: ", why,
                     "; serve this model with a tensor-parallel size that splits them evenly"));
  };
  if (by_outputs && (out_first % per_word != 0 || out % per_word != 0)) {
    return refuse(
        absl::StrCat("a rank's ", out, " output features are not whole int32 words of ", per_word, " packed values"));
  }
  std::vector<int32_t> layer_perm;  // the whole layer's act-order permutation; empty when in input order
  if (gptq && t.g_idx != nullptr) {
    absl::StatusOr<std::vector<int32_t>> perm = permutation_from_g_idx(t);
    if (!perm.ok()) return perm.status();
    layer_perm = std::move(*perm);
  }
  const bool act_order = !layer_perm.empty();
  if (by_inputs && !act_order && (in_first % group_size != 0 || in % group_size != 0)) {
    const int64_t groups = t.in_features / group_size;
    return refuse(absl::StrCat("a rank's ", in, " inputs are not whole groups of ", group_size, " (the layer's ",
                               t.in_features, " inputs form ", groups, groups == 1 ? " group)" : " groups)"));
  }

  // The packed groups this rank holds and the checkpoint group each takes its scales and zero-points from.
  std::vector<int64_t> group_of;
  int64_t packed_group_size = group_size;
  if (by_inputs && act_order) {
    // The rank's inputs by group, in input order within a group (local numbering: input − in_first).
    const std::vector<int32_t> g_idx = read_array<int32_t>(*t.g_idx);
    std::vector<std::vector<int32_t>> members(static_cast<size_t>(t.in_features / group_size));
    for (int64_t c = 0; c < in; ++c)
      members[static_cast<size_t>(g_idx[static_cast<size_t>(in_first + c)])].push_back(static_cast<int32_t>(c));
    // The packed group size (a multiple of per_word up to group_size) with the fewest bytes: each piece of a group
    // pads to whole packed groups, and each packed group costs a scale and zero-point per output (≈ 4 bytes).
    int64_t best_cost = -1;
    for (int64_t size = per_word; size <= group_size; size += per_word) {
      int64_t cost = 0;
      for (const auto& m : members) {
        const int64_t pieces = (static_cast<int64_t>(m.size()) + size - 1) / size;
        cost += pieces * (size * bits / 8 + 4);
      }
      if (best_cost < 0 || cost <= best_cost) {
        best_cost = cost;
        packed_group_size = size;
      }
    }
    for (size_t g = 0; g < members.size(); ++g) {
      const auto& m = members[g];
      for (size_t at = 0; at < m.size(); at += static_cast<size_t>(packed_group_size)) {
        group_of.push_back(static_cast<int64_t>(g));
        for (int64_t i = 0; i < packed_group_size; ++i) {
          const size_t k = at + static_cast<size_t>(i);
          source.perm.push_back(k < m.size() ? m[k] : -1);
        }
      }
    }
  } else {
    for (int64_t g = in_first / group_size; g < (in_first + in) / group_size; ++g) group_of.push_back(g);
    source.perm = std::move(layer_perm);  // act-order without an input split: every input, whole groups
  }
  const int64_t packed_inputs = static_cast<int64_t>(group_of.size()) * packed_group_size;
  source.shape = QuantizedShape{bits,
                                static_cast<int32_t>(packed_group_size),
                                out,
                                packed_inputs,
                                !source.perm.empty(),
                                packed_inputs != in ? in : 0};

  // Scales and zero-points of the checkpoint groups [first_group, last_group] (all of them for an act-order input
  // split, whose groups are scattered), the rank's outputs only.
  const int64_t first_group = *std::min_element(group_of.begin(), group_of.end());
  const int64_t held_groups = *std::max_element(group_of.begin(), group_of.end()) + 1 - first_group;
  const std::vector<uint16_t> scales = read_block<uint16_t>(*t.scales, first_group, held_groups, out_first, out);
  const std::vector<uint32_t> qzeros =
      read_block<uint32_t>(*t.qzeros, first_group, held_groups, out_first / per_word, out / per_word);
  std::vector<uint8_t> zeros(static_cast<size_t>(held_groups * out));
  const int32_t sym_zero = 1 << (bits - 1);
  for (int64_t g = 0; g < held_groups; ++g) {
    for (int64_t j = 0; j < out; ++j) {
      const uint32_t word = qzeros[static_cast<size_t>(g * (out / per_word) + j / per_word)];
      const int32_t index = gptq ? static_cast<int32_t>(j % per_word) : kAwqNibble[static_cast<size_t>(j % 8)];
      const int32_t zero = static_cast<int32_t>(field(word, index, bits)) + scheme.zero_offset;
      if (gptq && scheme.sym && zero != sym_zero) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", t.qzeros->name, "' holds zero-point ", zero, " (group ", first_group + g, ", output ",
            out_first + j, ") but config.json says sym: ", "true, which needs ", sym_zero, " everywhere"));
      }
      zeros[static_cast<size_t>(g * out + j)] = static_cast<uint8_t>(zero);
    }
  }
  source.scales.resize(static_cast<size_t>(static_cast<int64_t>(group_of.size()) * out));
  source.zeros.resize(source.scales.size());
  for (size_t k = 0; k < group_of.size(); ++k) {
    const size_t from = static_cast<size_t>((group_of[k] - first_group) * out);
    const auto to = static_cast<std::ptrdiff_t>(k) * out;
    std::copy_n(scales.begin() + static_cast<std::ptrdiff_t>(from), out, source.scales.begin() + to);
    std::copy_n(zeros.begin() + static_cast<std::ptrdiff_t>(from), out, source.zeros.begin() + to);
  }
  if (!with_weights) return source;

  // qweight: the rank's inputs (word rows for GPTQ, which packs along them) and outputs (words for AWQ).
  const int64_t first_word_row = gptq ? in_first / per_word : in_first;
  const int64_t word_rows = gptq ? (in_first + in + per_word - 1) / per_word - first_word_row : in;
  const int64_t word_cols = gptq ? out : out / 8;
  const std::vector<uint32_t> packed =
      read_block<uint32_t>(*t.qweight, first_word_row, word_rows, gptq ? out_first : out_first / 8, word_cols);
  if (gptq && source.perm.empty()) {
    source.qweight = packed;  // whole groups in input order: already the neutral order
    return source;
  }
  // q of activation input c (the layer's numbering) for the rank's output j, as the checkpoint stores it.
  const auto value = [&](int64_t c, int64_t j) -> uint32_t {
    if (gptq) {
      return field(packed[static_cast<size_t>((c / per_word - first_word_row) * word_cols + j)],
                   static_cast<int32_t>(c % per_word), bits);
    }
    return field(packed[static_cast<size_t>((c - first_word_row) * word_cols + j / 8)],
                 kAwqNibble[static_cast<size_t>(j % 8)], bits);
  };
  source.qweight.assign(static_cast<size_t>(packed_inputs / per_word * out), 0);
  for (int64_t i = 0; i < packed_inputs; ++i) {
    const int64_t local = source.perm.empty() ? i : source.perm[static_cast<size_t>(i)];
    if (local < 0) continue;  // padding: q = 0, read against a zero activation
    uint32_t* row = source.qweight.data() + i / per_word * out;
    const int32_t shift = static_cast<int32_t>(bits * (i % per_word));
    for (int64_t j = 0; j < out; ++j) row[j] |= value(in_first + local, j) << shift;
  }
  return source;
}

}  // namespace bm::engine
