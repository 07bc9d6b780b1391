#pragma once
// The images and videos of one prompt, preprocessed (engine/vision: pixel_values and grid_thw), as a request hands
// them to the engine. The prompt holds one run of <|image_pad|> / <|video_pad|> tokens per item, already expanded to
// the item's num_tokens(); items are listed in the order their runs appear. The engine encodes each item with the
// model's vision tower before the prompt's prefill and splices the embeddings in place of the run.
#include <cstdint>
#include <span>
#include <vector>

#include "engine/models/vision_encoder.h"

namespace bm::engine {

enum class MediaKind { kImage, kVideo };

struct MediaItem {
  MediaKind kind = MediaKind::kImage;
  VisionGrid grid;                  // grid_thw, in patches
  std::vector<float> pixel_values;  // [grid.num_patches(), patch_dim] F32, the processor's row order
  float second_per_grid_t = 1.0f;   // videos: seconds one temporal patch spans (temporal_patch_size / fps)
  uint64_t hash = 0;                // media_hash(): keys the prefix cache's blocks and the encoder's cache

  // <|image_pad|> / <|video_pad|> tokens the item takes in the prompt.
  int64_t num_tokens(int32_t merge_unit = 4) const { return grid.num_patches() / merge_unit; }
};

// Content hash of an item (kind, grid, second_per_grid_t and every pixel value), never 0: two requests with the same
// pad tokens but different pixels must not share KV blocks or encoder outputs.
uint64_t media_hash(const MediaItem& item);

struct PromptMedia {
  std::vector<MediaItem> items;  // in the order of their pad runs in the prompt
};

}  // namespace bm::engine
