#pragma once
// UTF-8 decoding with the "maximal subpart" rule of Unicode §3.9 (what Rust's String::from_utf8_lossy and
// therefore Hugging Face `tokenizers` use): each maximal prefix of a would-be sequence that cannot be
// completed becomes one U+FFFD.
#include <cstddef>
#include <string>
#include <string_view>

namespace bm::engine::utf8 {

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

struct Decoded {
  char32_t cp;  // U+FFFD when !valid
  int length;   // bytes consumed, >= 1 (for an invalid sequence: its maximal subpart)
  bool valid;
};

// Decodes the code point at `pos` (< text.size()).
Decoded decode(std::string_view text, size_t pos);

bool is_valid(std::string_view text);

// Replaces every invalid sequence with U+FFFD (one per maximal subpart); valid text comes back unchanged.
std::string sanitize(std::string_view text);

// Length (0..3) of a trailing prefix of a multi-byte sequence that more bytes could still complete.
size_t incomplete_tail_length(std::string_view text);

void append(std::string& out, char32_t cp);

}  // namespace bm::engine::utf8
