#pragma once
// The Qwen2.5-VL vision tower (transformers' Qwen2_5_VisionTransformerPretrainedModel) on the Backend interface:
// pixel_values [num_patches, 3 · 2 · 14 · 14] and grid_thw (engine/vision's preprocessing) in, the merged image
// embeddings [num_patches / 4, out_hidden_size] that replace the <|image_pad|> / <|video_pad|> tokens out.
//
// What runs: the patch embedding (a Conv3d whose kernel equals its stride, i.e. a linear layer over each
// flattened patch); the rows reordered so that each attention window's merge units are contiguous; `depth`
// pre-norm blocks (RMSNorm, attention with the 2-D rotary embedding over (row, column) positions, RMSNorm, SwiGLU
// MLP with biases), attending within windows of window_size pixels except on fullatt_block_indexes, which attend
// within each frame; then the patch merger (RMSNorm, four neighbouring patches concatenated, Linear, exact GELU,
// Linear) and the inverse reordering. Compute is F32 whatever the weights' dtype.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/model/checkpoint.h"

namespace bm::engine {

// config.json's "vision_config" block (Qwen2.5-VL).
struct VisionConfig {
  int32_t depth = 0;
  int32_t hidden_size = 0;
  int32_t intermediate_size = 0;
  int32_t num_heads = 0;
  int32_t out_hidden_size = 0;
  int32_t in_channels = 3;
  int32_t patch_size = 14;
  int32_t temporal_patch_size = 2;
  int32_t spatial_merge_size = 2;
  int32_t window_size = 112;  // pixels
  std::vector<int32_t> fullatt_block_indexes;
  double rope_theta = 10000.0;
  int32_t tokens_per_second = 2;
  // config.json's top level: the prompt tokens an image's and a video's embeddings replace.
  int32_t image_token_id = 151655;
  int32_t video_token_id = 151656;

  int32_t head_dim() const { return hidden_size / num_heads; }
  int64_t patch_dim() const { return int64_t{in_channels} * temporal_patch_size * patch_size * patch_size; }
  int32_t merge_unit() const { return spatial_merge_size * spatial_merge_size; }
  // What encode allocates for its activations per patch (its slot table: the pixels, seven [n, hidden] and two [n,
  // intermediate] rows, the rotary tables, and each patch's share of the merger's rows) — 77 KB with the 3B's
  // config; callers bound an image by it before the tower runs.
  int64_t activation_bytes_per_patch() const {
    const int64_t floats = patch_dim() + 7 * int64_t{hidden_size} + 2 * int64_t{intermediate_size} + head_dim() +
                           (int64_t{hidden_size} * merge_unit() + 2 * int64_t{out_hidden_size}) / merge_unit();
    return floats * 4;
  }
};

// The most activation memory one encode of one image or video may take: a larger one is refused at submit
// (DecoderLM::prepare_media), and a GPU engine leaves this much out of its KV cache (plan_kv_cache_blocks).
inline constexpr int64_t kMaxEncodeActivationBytes = int64_t{2} << 30;

// Parses the "vision_config" object of a config.json's text; refuses what the tower does not run (hidden_act
// other than silu, a head_dim not divisible by 4, a window not a whole number of merge units, ...).
absl::StatusOr<VisionConfig> parse_vision_config(std::string_view config_json);
absl::StatusOr<VisionConfig> load_vision_config(const std::filesystem::path& model_dir);

// One image or video: grid_thw in patches (t temporal patches of h × w).
struct VisionGrid {
  int32_t t = 0;
  int32_t h = 0;
  int32_t w = 0;
  int64_t num_patches() const { return int64_t{t} * h * w; }
};

// What the forward needs besides the pixels, computed on the host from the grids (transformers'
// get_vision_window_index, get_vision_cu_seqlens and the rotary table). Rows are patches in window order.
struct VisionLayout {
  int64_t num_patches = 0;
  int64_t num_tokens = 0;              // num_patches / merge_unit
  std::vector<int32_t> window_index;   // window-order merge unit i is original merge unit window_index[i]
  std::vector<int32_t> reverse_index;  // original merge unit j sits at window-order position reverse_index[j]
  std::vector<int32_t> window_starts;  // segment starts of the windowed blocks (cu_window_seqlens)
  std::vector<int32_t> frame_starts;   // segment starts of the full-attention blocks: one per frame
  std::vector<float> cos, sin;         // [num_patches, head_dim / 2], window order
};

// Checks the grids (positive, h and w multiples of spatial_merge_size, patches adding up to num_patches) and
// computes the layout; InvalidArgument with a sentence otherwise.
absl::StatusOr<VisionLayout> plan_vision_layout(const VisionConfig& config, std::span<const VisionGrid> grids,
                                                int64_t num_patches);

// Intermediate activations, for tests against the reference: after the patch embedding (original patch order) and
// after block 0 (window order), each [num_patches, hidden_size].
struct VisionTrace {
  std::vector<float> patch_embed;
  std::vector<float> block0;
};

// The visual.* tensors a checkpoint holds for this config, with their shapes (what VisionEncoder::load reads and
// checks; tools and tests write random towers from it).
struct VisionTensorShape {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<VisionTensorShape> vision_checkpoint_tensors(const VisionConfig& config);

class VisionEncoder {
 public:
  // Loads the visual.* tensors (BF16 or F32, the shapes the config implies) onto the backend. A backend without
  // the encoder ops, a missing tensor or one of the wrong shape or dtype is a status naming it.
  static absl::StatusOr<std::unique_ptr<VisionEncoder>> load(const Checkpoint& checkpoint, const VisionConfig& config,
                                                             Backend& backend);
  ~VisionEncoder();

  const VisionConfig& config() const { return config_; }

  // pixel_values [num_patches, patch_dim] row-major F32 → embeddings [num_tokens, out_hidden_size] in the
  // original merge-unit order (image after image). Bad grids or a pixel count that does not match them are
  // InvalidArgument; the backend's faults are returned as its device_status().
  absl::StatusOr<std::vector<float>> encode(std::span<const float> pixel_values, std::span<const VisionGrid> grids,
                                            VisionTrace* trace = nullptr);

 private:
  struct Weights;
  VisionEncoder(const VisionConfig& config, Backend& backend);

  VisionConfig config_;
  Backend& backend_;
  std::unique_ptr<Weights> weights_;
};

}  // namespace bm::engine
