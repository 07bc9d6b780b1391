#include "engine/tokenizer/byte_level.h"

#include <array>

#include "engine/tokenizer/utf8.h"

namespace bm::engine::byte_level {
namespace {

struct Tables {
  std::array<char32_t, 256> to_char{};
  std::array<int16_t, 324> to_byte{};  // indexed by code point; -1 outside the alphabet
};

bool is_printable_latin1(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

const Tables& tables() {
  static const Tables t = [] {
    Tables r;
    r.to_byte.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      r.to_char[b] = is_printable_latin1(b) ? static_cast<char32_t>(b) : next++;
      r.to_byte[r.to_char[b]] = static_cast<int16_t>(b);
    }
    return r;
  }();
  return t;
}

}  // namespace

char32_t byte_to_char(uint8_t byte) {
  return tables().to_char[byte];
}

std::optional<uint8_t> char_to_byte(char32_t cp) {
  const Tables& t = tables();
  if (cp >= t.to_byte.size() || t.to_byte[cp] < 0) return std::nullopt;
  return static_cast<uint8_t>(t.to_byte[cp]);
}

std::optional<std::string> token_to_bytes(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  size_t pos = 0;
  while (pos < token.size()) {
    const utf8::Decoded d = utf8::decode(token, pos);
    if (!d.valid) return std::nullopt;
    const std::optional<uint8_t> b = char_to_byte(d.cp);
    if (!b) return std::nullopt;
    out.push_back(static_cast<char>(*b));
    pos += d.length;
  }
  return out;
}

std::string bytes_to_token(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) utf8::append(out, byte_to_char(static_cast<uint8_t>(c)));
  return out;
}

}  // namespace bm::engine::byte_level
