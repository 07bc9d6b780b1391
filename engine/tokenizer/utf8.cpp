#include "engine/tokenizer/utf8.h"

namespace bm::engine::utf8 {
namespace {

bool is_continuation(unsigned char b) {
  return (b & 0xC0) == 0x80;
}

// Sequence length for a lead byte and the allowed range of its second byte (Unicode Table 3-7);
// 0 for a byte that cannot lead.
struct Lead {
  int length;
  unsigned char second_lo;
  unsigned char second_hi;
};

Lead lead_info(unsigned char b) {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

}  // namespace

Decoded decode(std::string_view text, size_t pos) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data()) + pos;
  const size_t avail = text.size() - pos;
  const unsigned char b0 = s[0];
  if (b0 < 0x80) return {b0, 1, true};
  const Lead lead = lead_info(b0);
  if (lead.length == 0) return {0xFFFD, 1, false};
  if (avail < 2 || s[1] < lead.second_lo || s[1] > lead.second_hi) return {0xFFFD, 1, false};
  if (lead.length == 2) return {static_cast<char32_t>(((b0 & 0x1F) << 6) | (s[1] & 0x3F)), 2, true};
  if (avail < 3 || !is_continuation(s[2])) return {0xFFFD, 2, false};
  if (lead.length == 3) {
    return {static_cast<char32_t>(((b0 & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F)), 3, true};
  }
  if (avail < 4 || !is_continuation(s[3])) return {0xFFFD, 3, false};
  return {static_cast<char32_t>(((b0 & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F)), 4,
          true};
}

bool is_valid(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const Decoded d = decode(text, pos);
    if (!d.valid) return false;
    pos += d.length;
  }
  return true;
}

std::string sanitize(std::string_view text) {
  if (is_valid(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() + 8);
  size_t pos = 0;
  while (pos < text.size()) {
    const Decoded d = decode(text, pos);
    if (d.valid) {
      out.append(text.substr(pos, d.length));
    } else {
      out.append(kReplacement);
    }
    pos += d.length;
  }
  return out;
}

size_t incomplete_tail_length(std::string_view text) {
  // A tail can only be incomplete if it starts within the last three bytes.
  const size_t n = text.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const size_t pos = n - back;
    const auto b = static_cast<unsigned char>(text[pos]);
    if (is_continuation(b)) continue;
    const Lead lead = lead_info(b);
    if (lead.length <= static_cast<int>(back)) return 0;
    // Incomplete only if every byte present fits the sequence (decode reports the whole tail as its
    // maximal subpart).
    const Decoded d = decode(text, pos);
    return !d.valid && static_cast<size_t>(d.length) == back ? back : 0;
  }
  return 0;
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace bm::engine::utf8
