#include "engine/models/mrope_positions.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace bm::engine {

absl::StatusOr<MropePositions> mrope_positions(std::span<const int32_t> token_ids, const MropeInputs& inputs) {
  const int32_t merge = inputs.spatial_merge_size;
  if (merge < 1) return absl::InvalidArgumentError("spatial_merge_size must be positive");
  if (!inputs.second_per_grid_ts.empty() && inputs.second_per_grid_ts.size() != inputs.video_grids.size()) {
    return absl::InvalidArgumentError(absl::StrCat("second_per_grid_ts has ", inputs.second_per_grid_ts.size(),
                                                   " values for ", inputs.video_grids.size(), " videos"));
  }
  MropePositions out;
  for (auto& row : out.rows) row.reserve(token_ids.size());
  size_t next_image = 0, next_video = 0;
  int64_t current = 0;
  int64_t max_position = -1;
  const size_t n = token_ids.size();
  for (size_t i = 0; i < n;) {
    const int32_t id = token_ids[i];
    const bool image = id == inputs.image_token_id, video = id == inputs.video_token_id;
    size_t end = i + 1;
    while (end < n && token_ids[end] == id) ++end;
    if (!image && !video) {  // text, up to the next pad token
      end = i + 1;
      while (end < n && token_ids[end] != inputs.image_token_id && token_ids[end] != inputs.video_token_id) ++end;
      for (size_t j = i; j < end; ++j, ++current) {
        for (auto& row : out.rows) row.push_back(current);
      }
      max_position = std::max(max_position, current - 1);
      i = end;
      continue;
    }
    const char* kind = image ? "image" : "video";
    std::span<const VisionGrid> grids = image ? inputs.image_grids : inputs.video_grids;
    size_t& next = image ? next_image : next_video;
    if (next >= grids.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the prompt has more ", kind, " token runs than the ", grids.size(), " ", kind, " grids given"));
    }
    const VisionGrid& grid = grids[next];
    if (grid.t < 1 || grid.h < merge || grid.w < merge || grid.h % merge != 0 || grid.w % merge != 0) {
      return absl::InvalidArgumentError(absl::StrCat(kind, " grid ", next, " is (", grid.t, ", ", grid.h, ", ", grid.w,
                                                     "): not a grid of whole merge units"));
    }
    const int64_t llm_h = grid.h / merge, llm_w = grid.w / merge;
    if (static_cast<int64_t>(end - i) != grid.t * llm_h * llm_w) {
      return absl::InvalidArgumentError(absl::StrCat(kind, " ", next, " has ", end - i, " pad tokens but its grid (",
                                                     grid.t, ", ", grid.h, ", ", grid.w, ") needs ",
                                                     grid.t * llm_h * llm_w));
    }
    // transformers: (arange(t) * interval).long(), interval a float32 tensor for videos (truncation toward 0).
    const float seconds = video && !inputs.second_per_grid_ts.empty() ? inputs.second_per_grid_ts[next] : 1.0f;
    const float interval = video ? static_cast<float>(inputs.tokens_per_second) * seconds : 1.0f;
    for (int64_t t = 0; t < grid.t; ++t) {
      const int64_t temporal = current + static_cast<int64_t>(static_cast<float>(t) * interval);
      for (int64_t y = 0; y < llm_h; ++y) {
        for (int64_t x = 0; x < llm_w; ++x) {
          out.rows[0].push_back(temporal);
          out.rows[1].push_back(current + y);
          out.rows[2].push_back(current + x);
          max_position = std::max({max_position, temporal, current + y, current + x});
        }
      }
    }
    current += std::max(llm_h, llm_w);
    ++next;
    i = end;
  }
  if (next_image != inputs.image_grids.size() || next_video != inputs.video_grids.size()) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", next_image, " image and ", next_video,
                                                   " video token runs but ", inputs.image_grids.size(), " and ",
                                                   inputs.video_grids.size(), " grids were given"));
  }
  out.delta = max_position + 1 - static_cast<int64_t>(n);
  return out;
}

}  // namespace bm::engine
