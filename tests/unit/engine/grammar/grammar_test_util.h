#pragma once
// Helpers for grammar tests: compile against a byte vocabulary and ask whether a whole text is a sentence.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/grammar/compiled_grammar.h"
#include "engine/grammar/grammar.h"
#include "gtest/gtest.h"

namespace bm::engine::grammar::testing {

// One token per byte value 1..255 (id = byte), plus a few multi-byte tokens.
inline std::shared_ptr<const TokenVocabulary> byte_vocabulary() {
  std::vector<std::string> bytes(256);
  for (int b = 1; b < 256; ++b) bytes[b] = std::string(1, static_cast<char>(b));
  for (const char* t : {"\"", "\":", "\",", "\"}", "{\"", "true", "false", "null", "12", "abc", "ab", " \"", "},"})
    bytes.emplace_back(t);
  const int32_t n = static_cast<int32_t>(bytes.size());
  return std::make_shared<const TokenVocabulary>(std::move(bytes), n + 3);  // 3 ids past the tokenizer
}

inline std::shared_ptr<const CompiledGrammar> compile_or_die(const Grammar& g) {
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c = CompiledGrammar::compile(g, byte_vocabulary());
  EXPECT_TRUE(c.ok()) << c.status() << "\n" << g.to_string();
  return c.ok() ? *c : nullptr;
}

inline bool matches(const CompiledGrammar& c, std::string_view text) {
  const int32_t config = c.advance(c.start(), text);
  return config != CompiledGrammar::kDead && c.is_accepting(config);
}

// A prefix of some sentence.
inline bool is_prefix(const CompiledGrammar& c, std::string_view text) {
  return c.advance(c.start(), text) != CompiledGrammar::kDead;
}

}  // namespace bm::engine::grammar::testing
