#include "engine/tokenizer/unicode_tables.h"

#include <algorithm>

namespace bm::engine::unicode {
namespace {

struct CombiningClass {
  char32_t cp;
  uint8_t ccc;
};
struct Decomposition {
  char32_t cp;
  uint16_t offset;
  uint8_t length;
};
struct Composition {
  char32_t first;
  char32_t second;
  char32_t composite;
};

#include "engine/tokenizer/unicode_tables.inc"

}  // namespace

uint8_t flags(char32_t cp) {
  if (cp >= 0x110000) return 0;
  return kFlagStage2[kFlagStage1[cp / kFlagBlockSize] * kFlagBlockSize + cp % kFlagBlockSize];
}

uint8_t combining_class(char32_t cp) {
  const auto* end = std::end(kCombiningClasses);
  const auto* it = std::lower_bound(std::begin(kCombiningClasses), end, cp,
                                    [](const CombiningClass& e, char32_t v) { return e.cp < v; });
  return it != end && it->cp == cp ? it->ccc : 0;
}

std::span<const char32_t> canonical_decomposition(char32_t cp) {
  const auto* end = std::end(kDecompositions);
  const auto* it = std::lower_bound(std::begin(kDecompositions), end, cp,
                                    [](const Decomposition& e, char32_t v) { return e.cp < v; });
  if (it == end || it->cp != cp) return {};
  return {kDecompositionData + it->offset, it->length};
}

char32_t compose(char32_t first, char32_t second) {
  const auto* end = std::end(kCompositions);
  const auto* it = std::lower_bound(std::begin(kCompositions), end, std::pair(first, second),
                                    [](const Composition& e, const auto& v) {
                                      return e.first != v.first ? e.first < v.first : e.second < v.second;
                                    });
  return it != end && it->first == first && it->second == second ? it->composite : 0;
}

}  // namespace bm::engine::unicode
