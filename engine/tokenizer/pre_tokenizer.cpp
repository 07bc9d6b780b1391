#include "engine/tokenizer/pre_tokenizer.h"

#include <array>
#include <cstdint>

#include "engine/tokenizer/unicode_tables.h"
#include "engine/tokenizer/utf8.h"

namespace bm::engine {
namespace {

constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The classes the patterns distinguish. kNewline (\r, \n) is also a space.
enum class Cls : uint8_t { kLetter, kNumber, kSpace, kNewline, kOther, kEnd };

struct Cp {
  char32_t cp;
  Cls cls;
  int length;
};

Cls classify(char32_t cp) {
  if (cp == '\r' || cp == '\n') return Cls::kNewline;
  const uint8_t f = unicode::flags(cp);
  if ((f & unicode::kLetter) != 0) return Cls::kLetter;
  if ((f & unicode::kNumber) != 0) return Cls::kNumber;
  if ((f & unicode::kSpace) != 0) return Cls::kSpace;
  return Cls::kOther;
}

const std::array<Cls, 128> kAsciiClasses = [] {
  std::array<Cls, 128> t{};
  for (char32_t c = 0; c < 128; ++c) t[c] = classify(c);
  return t;
}();

class Cursor {
 public:
  explicit Cursor(std::string_view text) : text_(text) {}

  Cp at(size_t pos) const {
    if (pos >= text_.size()) return {0, Cls::kEnd, 0};
    const auto b = static_cast<unsigned char>(text_[pos]);
    if (b < 0x80) return {b, kAsciiClasses[b], 1};
    const utf8::Decoded d = utf8::decode(text_, pos);
    return {d.cp, classify(d.cp), d.length};
  }

  size_t skip_while(size_t pos, Cls cls) const {
    for (Cp c = at(pos); c.cls == cls; c = at(pos)) pos += c.length;
    return pos;
  }

  size_t size() const { return text_.size(); }

 private:
  std::string_view text_;
};

char32_t fold(char32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return cp + ('a' - 'A');
  if (cp == 0x17F) return 's';  // LATIN SMALL LETTER LONG S case-folds to 's'
  return cp;
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d) at `pos` (which holds an apostrophe): the end of the match, or 0.
size_t match_contraction(const Cursor& cur, size_t pos) {
  const Cp first = cur.at(pos + 1);
  const char32_t a = fold(first.cp);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return pos + 1 + first.length;
  if (a == 'r' || a == 'v' || a == 'l') {
    const Cp second = cur.at(pos + 1 + first.length);
    const char32_t b = fold(second.cp);
    if ((a == 'l' && b == 'l') || (a != 'l' && b == 'e')) return pos + 1 + first.length + second.length;
  }
  return 0;
}

// The whitespace alternatives, at a space: \s*[\r\n]+ | \s+(?!\S) | \s+
size_t match_spaces(const Cursor& cur, size_t pos) {
  size_t end = pos;
  size_t last_newline_end = 0;
  size_t last_start = pos;
  for (Cp c = cur.at(end); c.cls == Cls::kSpace || c.cls == Cls::kNewline; c = cur.at(end)) {
    last_start = end;
    end += c.length;
    if (c.cls == Cls::kNewline) last_newline_end = end;
  }
  if (last_newline_end != 0) return last_newline_end;
  if (end == cur.size() || last_start == pos) return end;
  return last_start;  // leave the last space to prefix the word that follows
}

size_t match_at(const Cursor& cur, size_t pos, int max_digits) {
  const Cp c = cur.at(pos);
  if (c.cp == '\'') {
    const size_t end = match_contraction(cur, pos);
    if (end != 0) return end;
  }
  if (c.cls == Cls::kLetter) return cur.skip_while(pos + c.length, Cls::kLetter);
  const Cp next = cur.at(pos + c.length);
  if (c.cls != Cls::kNumber && c.cls != Cls::kNewline && next.cls == Cls::kLetter) {
    return cur.skip_while(pos + c.length, Cls::kLetter);
  }
  if (c.cls == Cls::kNumber) {
    size_t end = pos + c.length;
    for (int i = 1; i < max_digits; ++i) {
      const Cp d = cur.at(end);
      if (d.cls != Cls::kNumber) break;
      end += d.length;
    }
    return end;
  }
  const bool space_then_other = c.cp == ' ' && next.cls == Cls::kOther;
  if (space_then_other || c.cls == Cls::kOther) {
    size_t end = cur.skip_while(space_then_other ? pos + 1 : pos, Cls::kOther);
    return cur.skip_while(end, Cls::kNewline);
  }
  return match_spaces(cur, pos);
}

}  // namespace

std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex) {
  if (regex == kQwen2Regex) return SplitPattern::kQwen2;
  if (regex == kLlama3Regex) return SplitPattern::kLlama3;
  return std::nullopt;
}

void pre_tokenize(SplitPattern pattern, std::string_view text, std::vector<std::string_view>& out) {
  const int max_digits = pattern == SplitPattern::kLlama3 ? 3 : 1;
  const Cursor cur(text);
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = match_at(cur, pos, max_digits);
    out.push_back(text.substr(pos, end - pos));
    pos = end;
  }
}

}  // namespace bm::engine
