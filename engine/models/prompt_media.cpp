#include "engine/models/prompt_media.h"

#include <cstring>

#include "common/splitmix64.h"

namespace bm::engine {

uint64_t media_hash(const MediaItem& item) {
  uint64_t h = common::splitmix64(static_cast<uint64_t>(item.kind) + 1);
  h = common::splitmix64(h ^ static_cast<uint64_t>(item.grid.t));
  h = common::splitmix64(h ^ static_cast<uint64_t>(item.grid.h));
  h = common::splitmix64(h ^ static_cast<uint64_t>(item.grid.w));
  uint32_t seconds = 0;
  std::memcpy(&seconds, &item.second_per_grid_t, sizeof seconds);
  h = common::splitmix64(h ^ seconds);
  // Two values per round: the pixels dominate the cost (a 1024-token image has 4.8 M of them).
  const float* p = item.pixel_values.data();
  const size_t n = item.pixel_values.size();
  size_t i = 0;
  for (; i + 2 <= n; i += 2) {
    uint64_t pair = 0;
    std::memcpy(&pair, p + i, sizeof pair);
    h = common::splitmix64(h ^ pair);
  }
  if (i < n) {
    uint32_t last = 0;
    std::memcpy(&last, p + i, sizeof last);
    h = common::splitmix64(h ^ last);
  }
  h = common::splitmix64(h ^ n);
  return h == 0 ? 1 : h;
}

}  // namespace bm::engine
