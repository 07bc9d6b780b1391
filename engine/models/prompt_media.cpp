#include "engine/models/prompt_media.h"

#include <cstring>

namespace bm::engine {
namespace {

// splitmix64's finaliser: every input bit reaches every output bit.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t media_hash(const MediaItem& item) {
  uint64_t h = mix(static_cast<uint64_t>(item.kind) + 1);
  h = mix(h ^ static_cast<uint64_t>(item.grid.t));
  h = mix(h ^ static_cast<uint64_t>(item.grid.h));
  h = mix(h ^ static_cast<uint64_t>(item.grid.w));
  uint32_t seconds = 0;
  std::memcpy(&seconds, &item.second_per_grid_t, sizeof seconds);
  h = mix(h ^ seconds);
  // Two values per round: the pixels dominate the cost (a 1024-token image has 4.8 M of them).
  const float* p = item.pixel_values.data();
  const size_t n = item.pixel_values.size();
  size_t i = 0;
  for (; i + 2 <= n; i += 2) {
    uint64_t pair = 0;
    std::memcpy(&pair, p + i, sizeof pair);
    h = mix(h ^ pair);
  }
  if (i < n) {
    uint32_t last = 0;
    std::memcpy(&last, p + i, sizeof last);
    h = mix(h ^ last);
  }
  h = mix(h ^ n);
  return h == 0 ? 1 : h;
}

}  // namespace bm::engine
