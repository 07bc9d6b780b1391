#pragma once
// splitmix64's step (Steele, Lea and Flood): adds the golden-ratio increment, then mixes so that every input bit
// reaches every output bit. The content hashes of the engine (KV blocks, media) chain it.
#include <cstdint>

namespace bm::common {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace bm::common
