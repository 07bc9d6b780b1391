#include "engine/models/vision_encoder.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <iterator>
#include <numeric>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"
#include "engine/models/decoder_weights.h"
#include "nlohmann/json.hpp"

namespace bm::engine {
namespace {

using nlohmann::json;

constexpr int64_t kAlignment = 256;
constexpr float kNormEps = 1e-6f;  // every RMSNorm of the tower (transformers hard-codes it)

int64_t aligned(int64_t bytes) {
  return (bytes + kAlignment - 1) / kAlignment * kAlignment;
}

// An integer field of vision_config; `fallback` when absent (nullopt: required).
absl::Status read_int(const json& object, const char* key, std::optional<int32_t> fallback, int32_t& out) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    if (!fallback) return absl::InvalidArgumentError(absl::StrCat("config.json: vision_config has no '", key, "'"));
    out = *fallback;
    return absl::OkStatus();
  }
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: vision_config '", key, "' must be a non-negative integer"));
  }
  out = static_cast<int32_t>(it->get<int64_t>());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<VisionConfig> parse_vision_config(std::string_view config_json) {
  const json root = json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) return absl::InvalidArgumentError("config.json is not a JSON object");
  const auto block = root.find("vision_config");
  if (block == root.end() || !block->is_object()) {
    return absl::InvalidArgumentError("config.json has no 'vision_config' object (not a vision-language model)");
  }
  const json& v = *block;
  VisionConfig config;
  struct IntField {
    const char* key;
    std::optional<int32_t> fallback;
    int32_t VisionConfig::*field;
  };
  // transformers' Qwen2_5_VLVisionConfig defaults where a checkpoint may leave a field out.
  const IntField fields[] = {
      {"depth", std::nullopt, &VisionConfig::depth},
      {"hidden_size", std::nullopt, &VisionConfig::hidden_size},
      {"intermediate_size", std::nullopt, &VisionConfig::intermediate_size},
      {"num_heads", std::nullopt, &VisionConfig::num_heads},
      {"out_hidden_size", std::nullopt, &VisionConfig::out_hidden_size},
      {"patch_size", 14, &VisionConfig::patch_size},
      {"temporal_patch_size", 2, &VisionConfig::temporal_patch_size},
      {"spatial_merge_size", 2, &VisionConfig::spatial_merge_size},
      {"window_size", 112, &VisionConfig::window_size},
      {"tokens_per_second", 4, &VisionConfig::tokens_per_second},
  };
  for (const IntField& f : fields) {
    if (absl::Status status = read_int(v, f.key, f.fallback, config.*f.field); !status.ok()) return status;
  }
  // The real checkpoints say in_chans; transformers' config class says in_channels.
  if (absl::Status status = read_int(v, v.contains("in_chans") ? "in_chans" : "in_channels", 3, config.in_channels);
      !status.ok()) {
    return status;
  }
  if (const auto act = v.find("hidden_act"); act != v.end() && !(act->is_string() && *act == "silu")) {
    return absl::UnimplementedError(
        absl::StrCat("config.json: vision_config hidden_act ", act->dump(), " is not supported (only silu)"));
  }
  if (const auto full = v.find("fullatt_block_indexes"); full != v.end()) {
    if (!full->is_array()) return absl::InvalidArgumentError("config.json: fullatt_block_indexes must be a list");
    for (const json& index : *full) {
      if (!index.is_number_integer() || index.get<int64_t>() < 0 || index.get<int64_t>() >= config.depth) {
        return absl::InvalidArgumentError(
            absl::StrCat("config.json: fullatt_block_indexes holds ", index.dump(), ", not a block in [0, depth)"));
      }
      config.fullatt_block_indexes.push_back(index.get<int32_t>());
    }
  } else {
    config.fullatt_block_indexes = {7, 15, 23, 31};
  }
  // The pad tokens the language model's prompt holds for images and videos sit at the top level of config.json.
  if (absl::Status status = read_int(root, "image_token_id", 151655, config.image_token_id); !status.ok())
    return status;
  if (absl::Status status = read_int(root, "video_token_id", 151656, config.video_token_id); !status.ok())
    return status;
  if (const auto rope = v.find("rope_parameters"); rope != v.end() && rope->is_object()) {
    if (const auto theta = rope->find("rope_theta"); theta != rope->end() && theta->is_number()) {
      config.rope_theta = theta->get<double>();
    }
  }
  if (config.depth < 1 || config.hidden_size < 1 || config.num_heads < 1 || config.intermediate_size < 1 ||
      config.out_hidden_size < 1 || config.patch_size < 1 || config.temporal_patch_size < 1 ||
      config.spatial_merge_size < 1 || config.in_channels < 1) {
    return absl::InvalidArgumentError("config.json: vision_config sizes must be positive");
  }
  if (config.hidden_size % config.num_heads != 0 || config.head_dim() % 4 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: vision hidden_size ", config.hidden_size, " over ", config.num_heads,
                     " heads must give a head_dim divisible by 4 (the 2-D rotary embedding splits it so)"));
  }
  const int32_t merged_patch = config.spatial_merge_size * config.patch_size;
  if (config.window_size < merged_patch || config.window_size % merged_patch != 0) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: vision window_size ", config.window_size,
                                                   " is not a whole number of merged patches of ", merged_patch,
                                                   " pixels"));
  }
  return config;
}

absl::StatusOr<VisionConfig> load_vision_config(const std::filesystem::path& model_dir) {
  std::ifstream in(model_dir / "config.json", std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", (model_dir / "config.json").string()));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_vision_config(text);
}

absl::StatusOr<VisionLayout> plan_vision_layout(const VisionConfig& config, std::span<const VisionGrid> grids,
                                                int64_t num_patches) {
  if (grids.empty()) return absl::InvalidArgumentError("no image or video grid was given");
  const int32_t merge = config.spatial_merge_size;
  const int32_t unit = config.merge_unit();
  int64_t total = 0;
  for (size_t i = 0; i < grids.size(); ++i) {
    const VisionGrid& g = grids[i];
    if (g.t < 1 || g.h < 1 || g.w < 1 || g.h % merge != 0 || g.w % merge != 0) {
      return absl::InvalidArgumentError(absl::StrCat("grid_thw ", i, " is (", g.t, ", ", g.h, ", ", g.w,
                                                     "): t, h and w must be positive and h, w multiples of ", merge));
    }
    if (g.num_patches() > (int64_t{1} << 24)) {
      return absl::InvalidArgumentError(absl::StrCat("grid_thw ", i, " has ", g.num_patches(), " patches, too many"));
    }
    total += g.num_patches();
  }
  if (total != num_patches) {
    return absl::InvalidArgumentError(
        absl::StrCat("grid_thw accounts for ", total, " patches but pixel_values holds ", num_patches));
  }
  VisionLayout layout;
  layout.num_patches = num_patches;
  layout.num_tokens = num_patches / unit;
  layout.window_starts = {0};
  layout.frame_starts = {0};
  // Windows are window_size pixels square, i.e. `side` merge units; the last row and column of windows of an image
  // may be partial. Within each frame, windows go row by row, and the merge units within a window too.
  const int32_t side = config.window_size / merge / config.patch_size;
  int32_t base = 0;  // merge units of the grids before this one
  for (const VisionGrid& g : grids) {
    const int32_t mh = g.h / merge, mw = g.w / merge;
    for (int32_t t = 0; t < g.t; ++t) {
      for (int32_t wy = 0; wy < mh; wy += side) {
        for (int32_t wx = 0; wx < mw; wx += side) {
          for (int32_t y = wy; y < std::min(wy + side, mh); ++y) {
            for (int32_t x = wx; x < std::min(wx + side, mw); ++x) {
              layout.window_index.push_back(base + (t * mh + y) * mw + x);
            }
          }
          layout.window_starts.push_back(static_cast<int32_t>(layout.window_index.size()) * unit);
        }
      }
      layout.frame_starts.push_back(layout.frame_starts.back() + g.h * g.w);
    }
    base += g.t * mh * mw;
  }
  layout.reverse_index.resize(layout.window_index.size());
  for (size_t i = 0; i < layout.window_index.size(); ++i) {
    layout.reverse_index[static_cast<size_t>(layout.window_index[i])] = static_cast<int32_t>(i);
  }
  // The rotary angles of each patch, from its (row, column) in patches: the first head_dim/4 angles turn with the
  // row, the next head_dim/4 with the column, inv_freq[i] = theta^(-4i / head_dim) in float32 as transformers.
  const int32_t quarter = config.head_dim() / 4;
  const int32_t half = config.head_dim() / 2;
  std::vector<float> inv_freq(static_cast<size_t>(quarter));
  for (int32_t i = 0; i < quarter; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(half);
    inv_freq[static_cast<size_t>(i)] =
        1.0f / static_cast<float>(std::pow(static_cast<float>(config.rope_theta), exponent));
  }
  // Original merge unit → its grid and position, then rows emitted in window order.
  struct Unit {
    int32_t row, col;  // of the unit's top-left patch
  };
  std::vector<Unit> units;
  units.reserve(static_cast<size_t>(layout.num_tokens));
  for (const VisionGrid& g : grids) {
    const int32_t mh = g.h / merge, mw = g.w / merge;
    for (int32_t t = 0; t < g.t; ++t) {
      for (int32_t y = 0; y < mh; ++y) {
        for (int32_t x = 0; x < mw; ++x) units.push_back(Unit{y * merge, x * merge});
      }
    }
  }
  layout.cos.resize(static_cast<size_t>(num_patches * half));
  layout.sin.resize(static_cast<size_t>(num_patches * half));
  int64_t row = 0;
  for (const int32_t u : layout.window_index) {
    for (int32_t dy = 0; dy < merge; ++dy) {
      for (int32_t dx = 0; dx < merge; ++dx, ++row) {
        const float position[2] = {static_cast<float>(units[static_cast<size_t>(u)].row + dy),
                                   static_cast<float>(units[static_cast<size_t>(u)].col + dx)};
        for (int32_t axis = 0; axis < 2; ++axis) {
          for (int32_t i = 0; i < quarter; ++i) {
            const float angle = position[axis] * inv_freq[static_cast<size_t>(i)];
            const size_t at = static_cast<size_t>(row * half + axis * quarter + i);
            layout.cos[at] = std::cos(angle);
            layout.sin[at] = std::sin(angle);
          }
        }
      }
    }
  }
  return layout;
}

struct VisionEncoder::Weights {
  struct Linear {
    Tensor weight;
    Tensor bias;  // buffer null when the layer has none
    const Tensor* bias_or_null() const { return bias.buffer != nullptr ? &bias : nullptr; }
  };
  struct Block {
    Tensor norm1, norm2;
    Linear q, k, v, proj, gate, up, down;
  };
  std::unique_ptr<Buffer> storage;
  Tensor patch_embed;  // [hidden, patch_dim]
  std::vector<Block> blocks;
  Tensor ln_q;
  Linear merger_fc1, merger_fc2;
};

namespace {

// One tensor (or a row range of one: attn.qkv is split into q, k and v) to place on the backend.
struct Piece {
  std::string name;
  std::vector<int64_t> shape;  // the checkpoint's shape
  int64_t first_row = 0;       // of the [rows, cols] view below, taken from the tensor seen as [shape[0], rest]
  int64_t rows = 0, cols = 0;
  Tensor* destination = nullptr;
  bool linear_weight = false;
  const TensorInfo* source = nullptr;
  int64_t offset = 0;
};

std::string shape_text(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

VisionEncoder::VisionEncoder(const VisionConfig& config, Backend& backend)
    : config_(config), backend_(backend), weights_(std::make_unique<Weights>()) {}
VisionEncoder::~VisionEncoder() = default;

std::vector<VisionTensorShape> vision_checkpoint_tensors(const VisionConfig& config) {
  const int64_t d = config.hidden_size, ff = config.intermediate_size, merged = d * config.merge_unit();
  std::vector<VisionTensorShape> out;
  out.push_back({"visual.patch_embed.proj.weight",
                 {d, config.in_channels, config.temporal_patch_size, config.patch_size, config.patch_size}});
  auto linear = [&](const std::string& prefix, int64_t rows, int64_t cols) {
    out.push_back({prefix + ".weight", {rows, cols}});
    out.push_back({prefix + ".bias", {rows}});
  };
  for (int32_t i = 0; i < config.depth; ++i) {
    const std::string prefix = absl::StrCat("visual.blocks.", i, ".");
    out.push_back({prefix + "norm1.weight", {d}});
    out.push_back({prefix + "norm2.weight", {d}});
    linear(prefix + "attn.qkv", 3 * d, d);
    linear(prefix + "attn.proj", d, d);
    linear(prefix + "mlp.gate_proj", ff, d);
    linear(prefix + "mlp.up_proj", ff, d);
    linear(prefix + "mlp.down_proj", d, ff);
  }
  out.push_back({"visual.merger.ln_q.weight", {d}});
  linear("visual.merger.mlp.0", merged, merged);
  linear("visual.merger.mlp.2", config.out_hidden_size, merged);
  return out;
}

absl::StatusOr<std::unique_ptr<VisionEncoder>> VisionEncoder::load(const Checkpoint& checkpoint,
                                                                   const VisionConfig& config, Backend& backend) {
  if (!backend.runs_encoder_ops()) {
    return absl::UnimplementedError(absl::StrCat("the vision encoder does not run on the ", std::string(backend.name()),
                                                 " backend yet (the cpu backend runs it)"));
  }
  std::unique_ptr<VisionEncoder> encoder(new VisionEncoder(config, backend));
  Weights& w = *encoder->weights_;
  const int64_t d = config.hidden_size, ff = config.intermediate_size, merged = d * config.merge_unit();
  std::vector<Piece> pieces;
  auto add = [&](std::string name, std::vector<int64_t> shape, Tensor* destination, bool linear_weight = false,
                 int64_t first_row = 0, int64_t rows = -1) {
    Piece piece;
    // A vector is one row; a matrix or the Conv3d kernel is [shape[0], product of the rest].
    piece.rows = shape.size() == 1 ? 1 : (rows < 0 ? shape[0] : rows);
    piece.cols =
        std::accumulate(shape.begin() + (shape.size() == 1 ? 0 : 1), shape.end(), int64_t{1}, std::multiplies<>());
    piece.name = std::move(name);
    piece.shape = std::move(shape);
    piece.first_row = first_row;
    piece.destination = destination;
    piece.linear_weight = linear_weight;
    pieces.push_back(std::move(piece));
  };
  auto add_linear = [&](const std::string& prefix, int64_t out, int64_t in, Weights::Linear& linear) {
    add(prefix + ".weight", {out, in}, &linear.weight, /*linear_weight=*/true);
    add(prefix + ".bias", {out}, &linear.bias);
  };
  add("visual.patch_embed.proj.weight",
      {d, config.in_channels, config.temporal_patch_size, config.patch_size, config.patch_size}, &w.patch_embed,
      /*linear_weight=*/true);
  w.blocks.resize(static_cast<size_t>(config.depth));
  for (int32_t i = 0; i < config.depth; ++i) {
    Weights::Block& b = w.blocks[static_cast<size_t>(i)];
    const std::string prefix = absl::StrCat("visual.blocks.", i, ".");
    add(prefix + "norm1.weight", {d}, &b.norm1);
    add(prefix + "norm2.weight", {d}, &b.norm2);
    // qkv's output rows are q, then k, then v (reshape(seq, 3, heads, head_dim)): three separate weights, so that
    // a backend may pack each for its GEMM.
    Weights::Linear* parts[] = {&b.q, &b.k, &b.v};
    for (int64_t part = 0; part < 3; ++part) {
      add(prefix + "attn.qkv.weight", {3 * d, d}, &parts[part]->weight, true, part * d, d);
    }
    for (int64_t part = 0; part < 3; ++part) {
      add(prefix + "attn.qkv.bias", {3 * d}, &parts[part]->bias);
      pieces.back().cols = d;  // the [3d] vector read as [3, d]
      pieces.back().first_row = part;
    }
    add_linear(prefix + "attn.proj", d, d, b.proj);
    add_linear(prefix + "mlp.gate_proj", ff, d, b.gate);
    add_linear(prefix + "mlp.up_proj", ff, d, b.up);
    add_linear(prefix + "mlp.down_proj", d, ff, b.down);
  }
  add("visual.merger.ln_q.weight", {d}, &w.ln_q);
  add_linear("visual.merger.mlp.0", merged, merged, w.merger_fc1);
  add_linear("visual.merger.mlp.2", config.out_hidden_size, merged, w.merger_fc2);

  // Every tensor is checked before anything is allocated, so a bad checkpoint leaves nothing half-loaded.
  int64_t total = 0;
  for (Piece& piece : pieces) {
    piece.source = checkpoint.find(piece.name);
    if (piece.source == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("the checkpoint has no tensor '", piece.name, "'"));
    }
    if (piece.source->shape != piece.shape) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", piece.name, "' has shape ",
                                                     shape_text(piece.source->shape), " but config.json implies ",
                                                     shape_text(piece.shape)));
    }
    if (piece.source->dtype != DType::kBF16 && piece.source->dtype != DType::kF32 &&
        piece.source->dtype != DType::kF16) {
      return absl::UnimplementedError(absl::StrCat("tensor '", piece.name, "' has dtype ",
                                                   std::string(dtype_name(piece.source->dtype)),
                                                   "; the vision encoder reads BF16, F16 and F32 weights"));
    }
    piece.offset = total;
    total += aligned(piece.rows * piece.cols * dtype_size(piece.source->dtype));
  }
  absl::StatusOr<std::unique_ptr<Buffer>> storage = backend.allocate(total);
  if (!storage.ok()) return storage.status();
  w.storage = std::move(*storage);
  // F16 is what AWQ/GPTQ checkpoints (the AWQ Qwen2.5-VL models) keep their float tensors in, the vision tower's
  // included: the CPU kernels read it; other backends get BF16, as the decoder's float tensors do.
  const bool f16_to_bf16_here = backend.name() != "cpu";
  std::vector<uint16_t> converted;
  for (const Piece& piece : pieces) {
    const int64_t element = dtype_size(piece.source->dtype);
    const bool convert = piece.source->dtype == DType::kF16 && f16_to_bf16_here;
    *piece.destination =
        Tensor{w.storage.get(), piece.offset, convert ? DType::kBF16 : piece.source->dtype, piece.rows, piece.cols};
    std::span<const std::byte> bytes =
        piece.source->data.subspan(static_cast<size_t>(piece.first_row * piece.cols * element),
                                   static_cast<size_t>(piece.rows * piece.cols * element));
    if (convert) {
      converted = f16_to_bf16(bytes);
      bytes = std::as_bytes(std::span(converted));
    }
    if (piece.linear_weight) {
      backend.copy_linear_weight_to_device(bytes, *piece.destination);
    } else {
      backend.copy_to_device(bytes, *piece.destination);
    }
  }
  return encoder;
}

absl::StatusOr<std::vector<float>> VisionEncoder::encode(std::span<const float> pixel_values,
                                                         std::span<const VisionGrid> grids, VisionTrace* trace) {
  const VisionConfig& c = config_;
  const int64_t patch_dim = c.patch_dim();
  if (pixel_values.size() % static_cast<size_t>(patch_dim) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("pixel_values holds ", pixel_values.size(),
                                                   " floats, not a whole number of patches of ", patch_dim));
  }
  const int64_t n = static_cast<int64_t>(pixel_values.size()) / patch_dim;
  absl::StatusOr<VisionLayout> planned = plan_vision_layout(c, grids, n);
  if (!planned.ok()) return planned.status();
  const VisionLayout& layout = *planned;
  const int64_t d = c.hidden_size, ff = c.intermediate_size, unit = c.merge_unit();
  const int64_t tokens = layout.num_tokens, merged = d * unit, half = c.head_dim() / 2;

  // Activations and index tables for this call, in one buffer.
  struct Slot {
    DType dtype;
    int64_t rows, cols;
    Tensor view;
  };
  enum : size_t {
    kPixels,
    kX,
    kH,
    kNorm,
    kQ,
    kK,
    kV,
    kAttn,
    kGate,
    kUp,
    kCos,
    kSin,
    kFc1,
    kFc2,
    kOut,
    kWindowIndex,
    kReverseIndex,
    kWindowStarts,
    kFrameStarts,
    kNumSlots
  };
  Slot slots[kNumSlots] = {
      {DType::kF32, n, patch_dim, {}},
      {DType::kF32, n, d, {}},
      {DType::kF32, n, d, {}},
      {DType::kF32, n, d, {}},
      {DType::kF32, n, d, {}},
      {DType::kF32, n, d, {}},
      {DType::kF32, n, d, {}},
      {DType::kF32, n, d, {}},
      {DType::kF32, n, ff, {}},
      {DType::kF32, n, ff, {}},
      {DType::kF32, n, half, {}},
      {DType::kF32, n, half, {}},
      {DType::kF32, tokens, merged, {}},
      {DType::kF32, tokens, c.out_hidden_size, {}},
      {DType::kF32, tokens, c.out_hidden_size, {}},
      {DType::kI32, 1, tokens, {}},
      {DType::kI32, 1, tokens, {}},
      {DType::kI32, 1, static_cast<int64_t>(layout.window_starts.size()), {}},
      {DType::kI32, 1, static_cast<int64_t>(layout.frame_starts.size()), {}},
  };
  int64_t total = 0;
  for (Slot& slot : slots) {
    slot.view = Tensor{nullptr, total, slot.dtype, slot.rows, slot.cols};
    total += aligned(slot.rows * slot.cols * dtype_size(slot.dtype));
  }
  absl::StatusOr<std::unique_ptr<Buffer>> buffer = backend_.allocate(total);
  if (!buffer.ok()) return buffer.status();
  for (Slot& slot : slots) slot.view.buffer = buffer->get();
  auto t = [&](size_t i) -> const Tensor& { return slots[i].view; };
  auto upload = [&](size_t i, const auto& values) { backend_.copy_to_device(std::as_bytes(std::span(values)), t(i)); };
  upload(kPixels, pixel_values);
  upload(kCos, layout.cos);
  upload(kSin, layout.sin);
  upload(kWindowIndex, layout.window_index);
  upload(kReverseIndex, layout.reverse_index);
  upload(kWindowStarts, layout.window_starts);
  upload(kFrameStarts, layout.frame_starts);
  auto download = [&](const Tensor& tensor) {
    std::vector<float> host(static_cast<size_t>(tensor.num_elements()));
    backend_.copy_to_host(tensor, std::as_writable_bytes(std::span(host)));
    return host;
  };

  Backend& be = backend_;
  const Weights& w = *weights_;
  be.linear(t(kPixels), w.patch_embed, nullptr, t(kX));
  if (trace != nullptr) trace->patch_embed = download(t(kX));
  // Merge units into window order: each unit's patches are adjacent rows, so a unit is one row of [n / unit, merged].
  be.gather_rows(t(kX).reshaped(tokens, merged), t(kWindowIndex), t(kH).reshaped(tokens, merged));
  const AttentionShape shape{c.num_heads, c.num_heads, c.head_dim(),
                             1.0f / std::sqrt(static_cast<float>(c.head_dim()))};
  const Tensor& h = t(kH);
  for (int32_t i = 0; i < c.depth; ++i) {
    const Weights::Block& b = w.blocks[static_cast<size_t>(i)];
    const bool full =
        std::find(c.fullatt_block_indexes.begin(), c.fullatt_block_indexes.end(), i) != c.fullatt_block_indexes.end();
    be.rms_norm(h, b.norm1, kNormEps, t(kNorm));
    be.linear(t(kNorm), b.q.weight, b.q.bias_or_null(), t(kQ));
    be.linear(t(kNorm), b.k.weight, b.k.bias_or_null(), t(kK));
    be.linear(t(kNorm), b.v.weight, b.v.bias_or_null(), t(kV));
    be.rope_table(t(kQ), t(kCos), t(kSin), c.head_dim());
    be.rope_table(t(kK), t(kCos), t(kSin), c.head_dim());
    be.segment_attention(t(kQ), t(kK), t(kV), full ? t(kFrameStarts) : t(kWindowStarts), shape, t(kAttn));
    be.linear(t(kAttn), b.proj.weight, b.proj.bias_or_null(), t(kNorm));
    be.add(h, t(kNorm), h);
    be.rms_norm(h, b.norm2, kNormEps, t(kNorm));
    be.linear(t(kNorm), b.gate.weight, b.gate.bias_or_null(), t(kGate));
    be.linear(t(kNorm), b.up.weight, b.up.bias_or_null(), t(kUp));
    be.silu_mul(t(kGate), t(kUp), t(kGate));
    be.linear(t(kGate), b.down.weight, b.down.bias_or_null(), t(kNorm));
    be.add(h, t(kNorm), h);
    if (i == 0 && trace != nullptr) trace->block0 = download(h);
  }
  be.rms_norm(h, w.ln_q, kNormEps, t(kNorm));
  be.linear(t(kNorm).reshaped(tokens, merged), w.merger_fc1.weight, w.merger_fc1.bias_or_null(), t(kFc1));
  be.gelu(t(kFc1), t(kFc1));
  be.linear(t(kFc1), w.merger_fc2.weight, w.merger_fc2.bias_or_null(), t(kFc2));
  be.gather_rows(t(kFc2), t(kReverseIndex), t(kOut));
  std::vector<float> out = download(t(kOut));
  if (absl::Status status = be.device_status(); !status.ok()) return status;
  return out;
}

}  // namespace bm::engine
