#pragma once
// Per-code-point facts the tokenizer needs: the classes of the pre-tokenizer split patterns and the NFC data.
// The data comes from Python's unicodedata 14.0 (the Unicode version of Oniguruma 6.9.8, which Hugging Face
// `tokenizers` uses for its split regex); tests/tools/tokenizer_gen_unicode_tables.py regenerates it.
#include <cstdint>
#include <span>

namespace bm::engine::unicode {

enum CodePointFlag : uint8_t {
  kLetter = 1,        // \p{L}
  kNumber = 2,        // \p{N}
  kSpace = 4,         // \s (the White_Space property)
  kNfcSensitive = 8,  // NFC may change a string that contains it
};

uint8_t flags(char32_t cp);
inline bool is_letter(char32_t cp) {
  return (flags(cp) & kLetter) != 0;
}
inline bool is_number(char32_t cp) {
  return (flags(cp) & kNumber) != 0;
}
inline bool is_space(char32_t cp) {
  return (flags(cp) & kSpace) != 0;
}

// Canonical combining class (0 for starters and unassigned code points).
uint8_t combining_class(char32_t cp);
// Full canonical decomposition (already recursive), empty when the code point does not decompose.
// Hangul syllables are not in the table: callers decompose them algorithmically.
std::span<const char32_t> canonical_decomposition(char32_t cp);
// The primary composite of a starter and a following code point, or 0 when there is none.
char32_t compose(char32_t first, char32_t second);

}  // namespace bm::engine::unicode
