#pragma once
// Unicode normalization form C, the normalizer of the Qwen2 tokenizers.
#include <string>
#include <string_view>

namespace bm::engine {

// `text` must be valid UTF-8. Text that NFC leaves alone (most of it: ASCII, CJK, text already composed) is
// detected by one scan and returned without the decompose/reorder/compose passes.
std::string nfc(std::string_view text);

bool is_nfc_quick(std::string_view text);  // true: nfc(text) == text for sure

}  // namespace bm::engine
