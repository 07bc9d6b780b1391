#include "engine/grammar/unicode_ranges.h"

#include <algorithm>

namespace bm::engine::grammar {
namespace {

using ByteRanges = std::vector<std::pair<uint8_t, uint8_t>>;  // one range per byte position

// Splits [lo, hi] until every piece encodes as byte-wise ranges of equal length (as Rust's utf8-ranges does).
void split(uint32_t lo, uint32_t hi, std::vector<ByteRanges>& out) {
  if (lo > hi) return;
  for (uint32_t boundary : {0x7Fu, 0x7FFu, 0xFFFFu})
    if (lo <= boundary && boundary < hi) {
      split(lo, boundary, out);
      split(boundary + 1, hi, out);
      return;
    }
  if (hi <= 0x7F) {
    out.push_back({{static_cast<uint8_t>(lo), static_cast<uint8_t>(hi)}});
    return;
  }
  for (int i = 1; i < 4; ++i) {
    const uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        split(lo, lo | m, out);
        split((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        split(lo, (hi & ~m) - 1, out);
        split(hi & ~m, hi, out);
        return;
      }
    }
  }
  const std::string a = utf8_encode(lo), b = utf8_encode(hi);
  ByteRanges r;
  for (size_t k = 0; k < a.size(); ++k) r.emplace_back(static_cast<uint8_t>(a[k]), static_cast<uint8_t>(b[k]));
  out.push_back(std::move(r));
}

// States: 0 between characters; 1, 2, 3: that many continuation bytes (80-BF) to go; 4-7: the second byte after
// E0, ED, F0 and F4, whose ranges are narrower (no overlong forms, no surrogates, nothing past U+10FFFF).
const std::vector<Utf8Step> kUtf8Steps[kUtf8NumStates] = {
    {{0x00, 0x7F, 0},
     {0xC2, 0xDF, 1},
     {0xE0, 0xE0, 4},
     {0xE1, 0xEC, 2},
     {0xED, 0xED, 5},
     {0xEE, 0xEF, 2},
     {0xF0, 0xF0, 6},
     {0xF1, 0xF3, 3},
     {0xF4, 0xF4, 7}},
    {{0x80, 0xBF, 0}},
    {{0x80, 0xBF, 1}},
    {{0x80, 0xBF, 2}},
    {{0xA0, 0xBF, 1}},
    {{0x80, 0x9F, 1}},
    {{0x90, 0xBF, 2}},
    {{0x80, 0x8F, 2}},
};

}  // namespace

const std::vector<Utf8Step>& utf8_steps(int state) {
  return kUtf8Steps[state];
}

int utf8_next(int state, uint8_t byte) {
  for (const Utf8Step& step : kUtf8Steps[state])
    if (byte >= step.lo && byte <= step.hi) return step.to;
  return -1;
}

std::string utf8_encode(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

CodepointRanges normalize(CodepointRanges ranges) {
  CodepointRanges cut;
  for (auto [lo, hi] : ranges) {
    hi = std::min(hi, kMaxCodepoint);
    if (lo > hi) continue;
    if (lo < 0xD800 && hi >= 0xD800) cut.emplace_back(lo, std::min(hi, 0xD7FFu));
    if (hi > 0xDFFF && lo <= 0xDFFF) cut.emplace_back(0xE000, hi);
    if (hi < 0xD800 || lo > 0xDFFF) cut.emplace_back(lo, hi);
  }
  std::sort(cut.begin(), cut.end());
  CodepointRanges merged;
  for (auto [lo, hi] : cut) {
    if (!merged.empty() && lo <= merged.back().second + 1)
      merged.back().second = std::max(merged.back().second, hi);
    else
      merged.emplace_back(lo, hi);
  }
  return merged;
}

CodepointRanges complement(const CodepointRanges& ranges) {
  CodepointRanges in = normalize(ranges), out;
  uint32_t next = 0;
  for (auto [lo, hi] : in) {
    if (lo > next) out.emplace_back(next, lo - 1);
    next = hi + 1;
  }
  if (next <= kMaxCodepoint) out.emplace_back(next, kMaxCodepoint);
  return normalize(out);
}

int32_t codepoints_expr(Grammar& g, const CodepointRanges& ranges) {
  std::vector<ByteRanges> pieces;
  for (auto [lo, hi] : normalize(ranges)) split(lo, hi, pieces);
  // Single bytes merge into one class, so an ASCII class is one edge.
  ByteClass single;
  std::vector<int32_t> alternatives;
  for (const ByteRanges& piece : pieces) {
    if (piece.size() == 1) {
      single.add(piece[0].first, piece[0].second);
      continue;
    }
    std::vector<int32_t> seq;
    for (auto [lo, hi] : piece) seq.push_back(g.bytes(ByteClass::range(lo, hi)));
    alternatives.push_back(g.sequence(std::move(seq)));
  }
  if (!single.empty()) alternatives.insert(alternatives.begin(), g.bytes(single));
  if (alternatives.empty()) return g.bytes(ByteClass{});  // matches nothing
  return g.choice(std::move(alternatives));
}

}  // namespace bm::engine::grammar
