#pragma once
// M-RoPE position ids of Qwen2.5-VL (transformers' Qwen2_5_VLModel.get_rope_index, 5.x): three rows of positions
// (temporal, height, width) for a prompt of text, image and video tokens. Text tokens count up by one on all
// three rows; a run of image or video pad tokens takes the next grid of its kind and gets, per merged token,
// start + (t · interval, row, column) with t truncated to an integer after the multiply (interval 1 for images,
// tokens_per_second · second_per_grid_t for videos, in float32); the text after it resumes at
// start + max(rows, columns) of that grid (the temporal extent of a video does not advance it, as in
// transformers 5). `delta` = max position + 1 − number of tokens: decode steps then use position
// (cached tokens + delta) on all three rows.
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/models/vision_encoder.h"

namespace bm::engine {

struct MropeInputs {
  int32_t image_token_id = 151655;
  int32_t video_token_id = 151656;
  int32_t spatial_merge_size = 2;
  int32_t tokens_per_second = 2;
  std::span<const VisionGrid> image_grids;  // in the order the images appear
  std::span<const VisionGrid> video_grids;
  std::span<const float> second_per_grid_ts;  // one per video; empty: 1 second each
};

struct MropePositions {
  std::vector<int64_t> rows[3];  // temporal, height, width; each as long as the prompt
  int64_t delta = 0;
};

// A run of pad tokens whose length is not its grid's t · h · w / merge², a grid too many or too few for the runs,
// or a second_per_grid_ts of the wrong length is an InvalidArgument naming it.
absl::StatusOr<MropePositions> mrope_positions(std::span<const int32_t> token_ids, const MropeInputs& inputs);

}  // namespace bm::engine
