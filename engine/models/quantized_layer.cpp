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
                                                             bool with_weights) {
  QuantizedLayerSource source;
  const int32_t bits = scheme.bits;
  const int32_t per_word = 32 / bits;
  const int64_t out = t.out_features;
  const int64_t in = t.in_features;
  const int64_t groups = in / t.group_size;
  const bool gptq = scheme.format == QuantFormat::kGptq;
  if (gptq && t.g_idx != nullptr) {
    absl::StatusOr<std::vector<int32_t>> perm = permutation_from_g_idx(t);
    if (!perm.ok()) return perm.status();
    source.perm = std::move(*perm);
  }
  source.shape = QuantizedShape{bits, t.group_size, out, in, !source.perm.empty()};
  source.scales = read_array<uint16_t>(*t.scales);

  const std::vector<uint32_t> qzeros = read_array<uint32_t>(*t.qzeros);
  source.zeros.resize(static_cast<size_t>(groups * out));
  const int32_t sym_zero = 1 << (bits - 1);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t j = 0; j < out; ++j) {
      const uint32_t word = qzeros[static_cast<size_t>(g * (out / per_word) + j / per_word)];
      const int32_t index = gptq ? static_cast<int32_t>(j % per_word) : kAwqNibble[static_cast<size_t>(j % 8)];
      const int32_t zero = static_cast<int32_t>(field(word, index, bits)) + scheme.zero_offset;
      if (gptq && scheme.sym && zero != sym_zero) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", t.qzeros->name, "' holds zero-point ", zero, " (group ", g, ", output ", j,
                         ") but config.json says sym: ", "true, which needs ", sym_zero, " everywhere"));
      }
      source.zeros[static_cast<size_t>(g * out + j)] = static_cast<uint8_t>(zero);
    }
  }
  if (!with_weights) return source;

  const std::vector<uint32_t> packed = read_array<uint32_t>(*t.qweight);
  if (gptq && source.perm.empty()) {
    source.qweight = packed;  // already the neutral order
    return source;
  }
  // q of activation input c for output j, as the checkpoint stores it.
  const auto value = [&](int64_t c, int64_t j) -> uint32_t {
    if (gptq)
      return field(packed[static_cast<size_t>(c / per_word * out + j)], static_cast<int32_t>(c % per_word), bits);
    return field(packed[static_cast<size_t>(c * (out / 8) + j / 8)], kAwqNibble[static_cast<size_t>(j % 8)], bits);
  };
  source.qweight.assign(static_cast<size_t>(in / per_word * out), 0);
  for (int64_t i = 0; i < in; ++i) {
    const int64_t c = source.perm.empty() ? i : source.perm[static_cast<size_t>(i)];
    uint32_t* row = source.qweight.data() + i / per_word * out;
    const int32_t shift = static_cast<int32_t>(bits * (i % per_word));
    for (int64_t j = 0; j < out; ++j) row[j] |= value(c, j) << shift;
  }
  return source;
}

}  // namespace bm::engine
