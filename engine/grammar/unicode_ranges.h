#pragma once
// Sets of Unicode code points as byte-level grammar: the grammar works on bytes, so a character class becomes
// an alternation of UTF-8 byte-range sequences (the split that regex engines use for UTF-8 automata).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/grammar/grammar.h"

namespace bm::engine::grammar {

using CodepointRanges = std::vector<std::pair<uint32_t, uint32_t>>;  // inclusive

constexpr uint32_t kMaxCodepoint = 0x10FFFF;

// Sorted, merged, and without the surrogates (they have no UTF-8 form).
CodepointRanges normalize(CodepointRanges ranges);
CodepointRanges complement(const CodepointRanges& ranges);
// An expression matching exactly the UTF-8 encodings of the code points in `ranges`.
int32_t codepoints_expr(Grammar& g, const CodepointRanges& ranges);
std::string utf8_encode(uint32_t cp);

}  // namespace bm::engine::grammar
