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

// Reading UTF-8 one byte at a time, as the grammar and the token trie do. A state says how the current character
// goes on; kUtf8Boundary is between characters. Only valid encodings go through: no overlong forms, surrogates or
// code points past U+10FFFF (the encodings codepoints_expr produces).
constexpr int kUtf8Boundary = 0;
constexpr int kUtf8NumStates = 8;
struct Utf8Step {
  uint8_t lo, hi;  // the bytes that may come next, inclusive
  int8_t to;       // the state after one of them
};
// The bytes that may come in `state` (at the boundary: ASCII, then the lead bytes).
const std::vector<Utf8Step>& utf8_steps(int state);
// The state after `byte`, or -1 where it cannot come.
int utf8_next(int state, uint8_t byte);

}  // namespace bm::engine::grammar
