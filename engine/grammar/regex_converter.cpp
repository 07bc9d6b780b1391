#include "engine/grammar/regex_converter.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/grammar/unicode_ranges.h"

namespace bm::engine::grammar {
namespace {

constexpr int32_t kMaxCount = 1000;
// Groups nest at most this deep: the parser and the compiler recurse on nesting, and a pattern is input.
constexpr int kMaxNesting = 256;

const CodepointRanges kDigit = {{'0', '9'}};
const CodepointRanges kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
const CodepointRanges kSpace = {{'\t', '\r'}, {' ', ' '}};

class RegexParser {
 public:
  RegexParser(Grammar& g, std::string_view src, const RegexOptions& options) : g_(g), src_(src), options_(options) {}

  absl::StatusOr<int32_t> parse() {
    if (!src_.empty() && src_[0] == '^') ++pos_;
    absl::StatusOr<int32_t> e = alternation();
    if (!e.ok()) return e;
    if (pos_ < src_.size()) {
      if (src_[pos_] == ')') return error("an unmatched ')'");
      return error(absl::StrCat("'", std::string(src_.substr(pos_, 1)), "'"));
    }
    return e;
  }

 private:
  absl::Status error(const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("regular expression '", std::string(src_), "': ", what, " at offset ", pos_, " is not supported"));
  }

  bool at_end() const { return pos_ >= src_.size(); }
  char peek() const { return src_[pos_]; }

  // One UTF-8 character of the pattern as a code point.
  uint32_t next_codepoint() {
    const uint8_t b = static_cast<uint8_t>(src_[pos_++]);
    if (b < 0x80) return b;
    int extra = b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : 1;
    uint32_t cp = b & (0x3F >> extra);
    while (extra-- > 0 && !at_end()) cp = (cp << 6) | (static_cast<uint8_t>(src_[pos_++]) & 0x3F);
    return cp;
  }

  absl::StatusOr<int32_t> alternation() {
    std::vector<int32_t> alternatives;
    for (;;) {
      absl::StatusOr<int32_t> seq = sequence();
      if (!seq.ok()) return seq;
      alternatives.push_back(*seq);
      if (at_end() || peek() != '|') break;
      ++pos_;
    }
    return g_.choice(std::move(alternatives));
  }

  absl::StatusOr<int32_t> sequence() {
    std::vector<int32_t> items;
    while (!at_end() && peek() != '|' && peek() != ')') {
      if (peek() == '$' && pos_ + 1 == src_.size()) {
        ++pos_;
        break;
      }
      absl::StatusOr<int32_t> a = atom();
      if (!a.ok()) return a;
      absl::StatusOr<int32_t> q = quantified(*a);
      if (!q.ok()) return q;
      items.push_back(*q);
    }
    return g_.sequence(std::move(items));
  }

  // {m}, {m,}, {m,n} at pos_; nothing when the brace is a literal (as in Python).
  std::optional<std::pair<int32_t, int32_t>> counts() {
    size_t p = pos_ + 1;
    auto number = [&]() -> std::optional<int64_t> {
      size_t start = p;
      int64_t v = 0;
      while (p < src_.size() && src_[p] >= '0' && src_[p] <= '9' && v < 1000000) v = v * 10 + (src_[p++] - '0');
      if (p == start) return std::nullopt;
      return v;
    };
    std::optional<int64_t> lo = number();
    if (!lo && p < src_.size() && src_[p] == ',') lo = 0;  // Python's {,n}
    if (!lo) return std::nullopt;
    int64_t hi = *lo;
    if (p < src_.size() && src_[p] == ',') {
      ++p;
      std::optional<int64_t> h = number();
      hi = h ? *h : Grammar::kUnbounded;
    }
    if (p >= src_.size() || src_[p] != '}') return std::nullopt;
    pos_ = p + 1;
    return std::make_pair(static_cast<int32_t>(std::min<int64_t>(*lo, kMaxCount + 1)),
                          static_cast<int32_t>(std::min<int64_t>(hi, kMaxCount + 1)));
  }

  absl::StatusOr<int32_t> quantified(int32_t item) {
    while (!at_end()) {
      int32_t lo, hi;
      const char c = peek();
      if (c == '*') {
        lo = 0, hi = Grammar::kUnbounded, ++pos_;
      } else if (c == '+') {
        lo = 1, hi = Grammar::kUnbounded, ++pos_;
      } else if (c == '?') {
        lo = 0, hi = 1, ++pos_;
      } else if (c == '{') {
        std::optional<std::pair<int32_t, int32_t>> n = counts();
        if (!n) return item;
        std::tie(lo, hi) = *n;
        if (lo > kMaxCount || hi > kMaxCount) return error(absl::StrCat("a repetition count above ", kMaxCount));
        if (hi != Grammar::kUnbounded && hi < lo) return error("a repetition {m,n} with n < m");
      } else {
        return item;
      }
      if (!at_end() && peek() == '?') ++pos_;  // lazy: the same strings
      if (!at_end() && peek() == '+') return error("a possessive quantifier");
      item = g_.repeat(item, lo, hi);
      if (!at_end() && (peek() == '*' || peek() == '+' || peek() == '?')) return error("a multiple repeat");
    }
    return item;
  }

  // The expression for a set of characters, escaped for JSON when the text lands in a JSON string.
  int32_t chars(const CodepointRanges& set) {
    if (!options_.json_string) return codepoints_expr(g_, set);
    const CodepointRanges plain = normalize([&] {
      CodepointRanges r;
      for (const auto& range : normalize(set)) {
        // Cut out 0x00-0x1F, '"' and '\\': JSON writes them escaped. (Plain names, not a structured binding: clang 14,
        // which builds the fuzzers, cannot capture bindings in a lambda.)
        const uint32_t lo = range.first, hi = range.second;
        auto keep = [&](uint32_t a, uint32_t b) {
          a = std::max(a, lo), b = std::min(b, hi);
          if (a <= b) r.emplace_back(a, b);
        };
        keep(0x20, '"' - 1);
        keep('"' + 1, '\\' - 1);
        keep('\\' + 1, kMaxCodepoint);
      }
      return r;
    }());
    std::vector<int32_t> alternatives;
    if (!plain.empty()) alternatives.push_back(codepoints_expr(g_, plain));
    auto in_set = [&](uint32_t cp) {
      for (auto [lo, hi] : set)
        if (cp >= lo && cp <= hi) return true;
      return false;
    };
    for (uint32_t cp = 0; cp < 0x20; ++cp)
      if (in_set(cp)) {
        const char* named = cp == '\n' ? "\\n" : cp == '\t' ? "\\t" : cp == '\r' ? "\\r" : nullptr;
        alternatives.push_back(g_.literal(named ? std::string(named) : absl::StrFormat("\\u%04x", cp)));
      }
    if (in_set('"')) alternatives.push_back(g_.literal("\\\""));
    if (in_set('\\')) alternatives.push_back(g_.literal("\\\\"));
    if (alternatives.empty()) return g_.bytes(ByteClass{});
    return g_.choice(std::move(alternatives));
  }

  // An escape after '\' (pos_ at the letter) as a set of characters.
  absl::StatusOr<CodepointRanges> escape(bool in_class) {
    if (at_end()) return error("a trailing backslash");
    const char c = peek();
    ++pos_;
    switch (c) {
      case 'd':
        return kDigit;
      case 'D':
        return complement(kDigit);
      case 'w':
        return kWord;
      case 'W':
        return complement(kWord);
      case 's':
        return kSpace;
      case 'S':
        return complement(kSpace);
      case 'n':
        return CodepointRanges{{'\n', '\n'}};
      case 't':
        return CodepointRanges{{'\t', '\t'}};
      case 'r':
        return CodepointRanges{{'\r', '\r'}};
      case 'f':
        return CodepointRanges{{'\f', '\f'}};
      case 'v':
        return CodepointRanges{{'\v', '\v'}};
      case '0':
        return CodepointRanges{{0, 0}};
      case 'x':
      case 'u': {
        const size_t digits = c == 'x' ? 2 : 4;
        if (pos_ + digits > src_.size()) return error(absl::StrCat("an incomplete \\", std::string(1, c), " escape"));
        uint32_t cp = 0;
        for (size_t i = 0; i < digits; ++i) {
          const char h = src_[pos_ + i];
          const int v = h >= '0' && h <= '9'   ? h - '0'
                        : h >= 'a' && h <= 'f' ? h - 'a' + 10
                        : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                               : -1;
          if (v < 0) return error(absl::StrCat("an invalid \\", std::string(1, c), " escape"));
          cp = cp * 16 + static_cast<uint32_t>(v);
        }
        pos_ += digits;
        return CodepointRanges{{cp, cp}};
      }
      case 'b':
        if (in_class) return CodepointRanges{{'\b', '\b'}};
        --pos_;
        return error("a word boundary \\b");
      default:
        if ((c >= '1' && c <= '9')) {
          --pos_;
          return error("a backreference");
        }
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
          --pos_;
          return error(absl::StrCat("the escape \\", std::string(1, c)));
        }
        --pos_;
        const uint32_t cp = next_codepoint();
        return CodepointRanges{{cp, cp}};
    }
  }

  absl::StatusOr<int32_t> atom() {
    const char c = peek();
    if (c == '(') {
      if (++depth_ > kMaxNesting) return error(absl::StrCat("groups nested deeper than ", kMaxNesting));
      ++pos_;
      if (!at_end() && peek() == '?') {
        if (src_.substr(pos_, 2) == "?:") {
          pos_ += 2;
        } else if (src_.substr(pos_, 3) == "?P<" ||
                   (src_.substr(pos_, 2) == "?<" && src_.substr(pos_, 3) != "?<=" && src_.substr(pos_, 3) != "?<!")) {
          const size_t close = src_.find('>', pos_);
          if (close == std::string_view::npos) return error("an unterminated group name");
          pos_ = close + 1;
        } else {
          return error("lookaround or an inline flag group '(?'");
        }
      }
      absl::StatusOr<int32_t> inner = alternation();
      if (!inner.ok()) return inner;
      if (at_end() || peek() != ')') return error("an unterminated group");
      ++pos_;
      --depth_;
      return inner;
    }
    if (c == '[') return char_class();
    if (c == '.') {
      ++pos_;
      return chars(complement({{'\n', '\n'}}));
    }
    if (c == '\\') {
      ++pos_;
      absl::StatusOr<CodepointRanges> set = escape(false);
      if (!set.ok()) return set.status();
      return chars(*set);
    }
    if (c == '*' || c == '+' || c == '?') return error("a quantifier with nothing to repeat");
    if (c == '^') return error("'^' after the start");
    if (c == '$') return error("'$' before the end");
    const uint32_t cp = next_codepoint();
    return chars({{cp, cp}});
  }

  absl::StatusOr<int32_t> char_class() {
    ++pos_;  // '['
    bool negated = false;
    if (!at_end() && peek() == '^') {
      negated = true;
      ++pos_;
    }
    CodepointRanges set;
    bool first = true;
    while (!at_end() && (peek() != ']' || first)) {
      first = false;
      if (src_.substr(pos_, 2) == "[:") return error("a POSIX class [:...:]");
      CodepointRanges item;
      bool single = true;
      if (peek() == '\\') {
        ++pos_;
        absl::StatusOr<CodepointRanges> e = escape(true);
        if (!e.ok()) return e.status();
        item = *e;
        single = item.size() == 1 && item[0].first == item[0].second;
      } else {
        const uint32_t cp = next_codepoint();
        item = {{cp, cp}};
      }
      if (single && pos_ + 1 < src_.size() && peek() == '-' && src_[pos_ + 1] != ']') {
        ++pos_;
        uint32_t hi;
        if (peek() == '\\') {
          ++pos_;
          absl::StatusOr<CodepointRanges> e = escape(true);
          if (!e.ok()) return e.status();
          if (e->size() != 1 || (*e)[0].first != (*e)[0].second) return error("a range ending in a class escape");
          hi = (*e)[0].first;
        } else {
          hi = next_codepoint();
        }
        if (hi < item[0].first) return error("a reversed range in a character class");
        item[0].second = hi;
      }
      set.insert(set.end(), item.begin(), item.end());
    }
    if (at_end()) return error("an unterminated character class");
    ++pos_;  // ']'
    return chars(negated ? complement(set) : normalize(set));
  }

  Grammar& g_;
  std::string_view src_;
  RegexOptions options_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

absl::StatusOr<int32_t> regex_to_expr(Grammar& g, std::string_view pattern, const RegexOptions& options) {
  return RegexParser(g, pattern, options).parse();
}

}  // namespace bm::engine::grammar
