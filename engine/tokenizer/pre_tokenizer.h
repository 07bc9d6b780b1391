#pragma once
// The split step of the byte-level BPE families, hand-written because std::regex has no \p{..} classes.
// Each pattern is matched exactly as Oniguruma (leftmost alternative first) matches it in Hugging Face
// `tokenizers`; every code point matches some alternative, so the pieces cover the text.
//
// kQwen2:  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|
// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ kLlama3: the same with \p{N}{1,3}
#include <optional>
#include <string_view>
#include <vector>

namespace bm::engine {

enum class SplitPattern { kQwen2, kLlama3 };

// The pattern a tokenizer.json "Split" regex names, or nullopt for one we do not implement.
std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex);

// Appends the pieces of `text` (valid UTF-8) to `out`.
void pre_tokenize(SplitPattern pattern, std::string_view text, std::vector<std::string_view>& out);

}  // namespace bm::engine
