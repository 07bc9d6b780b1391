#pragma once
// The GPT-2 byte-level alphabet: every byte is shown as one printable code point (printable Latin-1 bytes as
// themselves, the others as U+0100 onwards), so vocab.json / tokenizer.json hold tokens as text.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bm::engine::byte_level {

char32_t byte_to_char(uint8_t byte);
std::optional<uint8_t> char_to_byte(char32_t cp);

// The raw bytes a vocabulary token stands for; nullopt if a character is outside the alphabet (then the
// token cannot come out of byte-level BPE, e.g. "<｜User｜>").
std::optional<std::string> token_to_bytes(std::string_view token);

// The vocabulary spelling of raw bytes.
std::string bytes_to_token(std::string_view bytes);

}  // namespace bm::engine::byte_level
