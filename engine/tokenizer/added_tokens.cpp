#include "engine/tokenizer/added_tokens.h"

#include <algorithm>

#include "common/check.h"
#include "engine/tokenizer/unicode_tables.h"
#include "engine/tokenizer/utf8.h"

namespace bm::engine {
namespace {

// Rust's char::is_alphanumeric() || '_' (Hugging Face's word character), approximated by \p{L} and \p{N}.
bool is_word_char(char32_t cp) {
  return cp == '_' || unicode::is_letter(cp) || unicode::is_number(cp);
}

// The code point that ends just before `pos`.
char32_t code_point_before(std::string_view text, size_t pos) {
  size_t start = pos - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80 && pos - start < 4) --start;
  return utf8::decode(text, start).cp;
}

size_t start_of_trailing_space(std::string_view text, size_t begin, size_t pos) {
  while (pos > begin) {
    size_t start = pos - 1;
    while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    if (!unicode::is_space(utf8::decode(text, start).cp)) break;
    pos = start;
  }
  return pos;
}

size_t end_of_leading_space(std::string_view text, size_t pos) {
  while (pos < text.size()) {
    const utf8::Decoded d = utf8::decode(text, pos);
    if (!unicode::is_space(d.cp)) break;
    pos += d.length;
  }
  return pos;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens, const std::vector<std::string>& patterns)
    : tokens_(tokens) {
  BM_CHECK(tokens.size() == patterns.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& pattern = patterns[i];
    if (pattern.empty()) continue;
    int32_t node = 0;
    for (char c : pattern) {
      const auto byte = static_cast<unsigned char>(c);
      int32_t next = child(node, byte);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
        auto& children = nodes_[node].children;
        children.insert(std::upper_bound(children.begin(), children.end(), std::pair(byte, int32_t{-1})), {byte, next});
      }
      node = next;
    }
    // Two tokens with the same text: the first one listed wins.
    if (nodes_[node].token < 0) nodes_[node].token = static_cast<int32_t>(i);
    first_bytes_[static_cast<unsigned char>(pattern[0])] = true;
  }
}

int32_t AddedTokenMatcher::child(int32_t node, unsigned char byte) const {
  const auto& children = nodes_[node].children;
  auto it = std::lower_bound(children.begin(), children.end(), std::pair(byte, int32_t{-1}));
  return it != children.end() && it->first == byte ? it->second : -1;
}

bool AddedTokenMatcher::find_longest_at(std::string_view text, size_t pos, Match& match) const {
  int32_t node = 0;
  bool found = false;
  for (size_t i = pos; i < text.size(); ++i) {
    node = child(node, static_cast<unsigned char>(text[i]));
    if (node < 0) break;
    if (nodes_[node].token >= 0) {
      match = {pos, i + 1, nodes_[node].token};
      found = true;
    }
  }
  return found;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  size_t text_start = 0;  // where the pending ordinary text begins
  size_t pos = 0;
  while (pos < text.size()) {
    Match m{};
    if (!first_bytes_[static_cast<unsigned char>(text[pos])] || !find_longest_at(text, pos, m)) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[m.token];
    pos = m.end;  // the search resumes after this match even if the flags reject it
    if (token.single_word) {
      const bool word_before = m.begin > 0 && is_word_char(code_point_before(text, m.begin));
      const bool word_after = m.end < text.size() && is_word_char(utf8::decode(text, m.end).cp);
      if (word_before || word_after) continue;
    }
    size_t begin = m.begin;
    size_t end = m.end;
    if (token.lstrip) begin = start_of_trailing_space(text, text_start, begin);
    if (token.rstrip) end = end_of_leading_space(text, end);
    if (begin > text_start) out.push_back({text_start, begin, kText});
    out.push_back({begin, end, token.id});
    text_start = end;
    pos = end;
  }
  if (text_start < text.size()) out.push_back({text_start, text.size(), kText});
}

}  // namespace bm::engine
