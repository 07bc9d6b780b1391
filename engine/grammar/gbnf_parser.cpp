#include "engine/grammar/gbnf_parser.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "engine/grammar/unicode_ranges.h"

namespace bm::engine::grammar {
namespace {

constexpr int32_t kMaxCount = 1000;
// Groups nest at most this deep: the parser and the compiler recurse on nesting, and a grammar is input.
constexpr int kMaxNesting = 256;

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

class GbnfParser {
 public:
  explicit GbnfParser(std::string_view src) : src_(src) {}

  absl::StatusOr<Grammar> parse() {
    skip_space();
    if (at_end()) return absl::InvalidArgumentError("the grammar is empty");
    while (!at_end()) {
      const size_t start = pos_;
      std::string name = read_name();
      if (name.empty()) return error("a rule name");
      skip_space();
      if (src_.substr(pos_, 3) != "::=") return error("'::=' after the rule name");
      pos_ += 3;
      const int32_t rule = rule_id(name);
      if (defined_.count(name)) {
        pos_ = start;
        return error(absl::StrCat("a single definition of rule '", name, "' (it is defined twice)"));
      }
      defined_[name] = true;
      absl::StatusOr<int32_t> body = alternates();
      if (!body.ok()) return body.status();
      g_.set_body(rule, *body);
      skip_space();
    }
    for (int32_t r = 0; r < g_.num_rules(); ++r)
      if (!defined_.count(g_.rule_name(r)))
        return absl::InvalidArgumentError(
            absl::StrCat("grammar: rule '", g_.rule_name(r), "' is used but never defined"));
    std::optional<int32_t> root = g_.find_rule("root");
    if (!root) return absl::InvalidArgumentError("grammar: there is no 'root' rule (the start symbol)");
    g_.set_root(*root);
    return std::move(g_);
  }

 private:
  absl::Status error(const std::string& expected) const {
    int line = 1, column = 1;
    for (size_t i = 0; i < pos_ && i < src_.size(); ++i) {
      if (src_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat("grammar syntax error at line ", line, ", column ", column, ": expected ", expected));
  }

  bool at_end() const { return pos_ >= src_.size(); }

  void skip_space() {
    while (!at_end()) {
      const char c = src_[pos_];
      if (c == '#') {
        while (!at_end() && src_[pos_] != '\n') ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else {
        break;
      }
    }
  }

  std::string read_name() {
    const size_t start = pos_;
    while (!at_end() && is_name_char(src_[pos_])) ++pos_;
    return std::string(src_.substr(start, pos_ - start));
  }

  // A rule name followed by '::=' starts the next rule, which ends the current one.
  bool at_rule_start() {
    const size_t save = pos_;
    const std::string name = read_name();
    skip_space();
    const bool starts = !name.empty() && src_.substr(pos_, 3) == "::=";
    pos_ = save;
    return starts;
  }

  int32_t rule_id(const std::string& name) {
    if (std::optional<int32_t> r = g_.find_rule(name)) return *r;
    return g_.add_rule(name);
  }

  absl::StatusOr<int32_t> alternates() {
    std::vector<int32_t> alternatives;
    for (;;) {
      absl::StatusOr<int32_t> seq = sequence();
      if (!seq.ok()) return seq;
      alternatives.push_back(*seq);
      skip_space();
      if (at_end() || src_[pos_] != '|') break;
      ++pos_;
    }
    return g_.choice(std::move(alternatives));
  }

  absl::StatusOr<int32_t> sequence() {
    std::vector<int32_t> items;
    for (;;) {
      skip_space();
      if (at_end() || src_[pos_] == '|' || src_[pos_] == ')' || at_rule_start()) break;
      absl::StatusOr<int32_t> item = primary();
      if (!item.ok()) return item;
      absl::StatusOr<int32_t> q = quantified(*item);
      if (!q.ok()) return q;
      items.push_back(*q);
    }
    return g_.sequence(std::move(items));
  }

  absl::StatusOr<int32_t> quantified(int32_t item) {
    for (int quantifiers = 0; !at_end(); ++quantifiers) {
      if (quantifiers == 1 && (src_[pos_] == '*' || src_[pos_] == '+' || src_[pos_] == '?' || src_[pos_] == '{'))
        return error("one quantifier per item (group it to repeat a repetition: (x*)+)");
      const char c = src_[pos_];
      if (c == '*' || c == '+' || c == '?') {
        ++pos_;
        item = c == '*' ? g_.star(item) : c == '+' ? g_.plus(item) : g_.optional(item);
        continue;
      }
      if (c != '{') return item;
      ++pos_;
      auto number = [&]() -> std::optional<int64_t> {
        skip_space();
        const size_t start = pos_;
        int64_t v = 0;
        while (!at_end() && src_[pos_] >= '0' && src_[pos_] <= '9' && v <= kMaxCount) v = v * 10 + (src_[pos_++] - '0');
        if (start == pos_) return std::nullopt;
        return v;
      };
      std::optional<int64_t> lo = number();
      if (!lo) return error("a number after '{'");
      int64_t hi = *lo;
      skip_space();
      if (!at_end() && src_[pos_] == ',') {
        ++pos_;
        std::optional<int64_t> h = number();
        hi = h ? *h : Grammar::kUnbounded;
      }
      skip_space();
      if (at_end() || src_[pos_] != '}') return error("'}' closing the repetition count");
      ++pos_;
      if (*lo > kMaxCount || hi > kMaxCount) return error(absl::StrCat("repetition counts of at most ", kMaxCount));
      if (hi != Grammar::kUnbounded && hi < *lo) return error("{m,n} with m <= n");
      item = g_.repeat(item, static_cast<int32_t>(*lo), static_cast<int32_t>(hi));
    }
    return item;
  }

  // One character of a literal or class, escapes resolved, as a code point.
  absl::StatusOr<uint32_t> character() {
    if (at_end()) return error("a character");
    uint8_t b = static_cast<uint8_t>(src_[pos_]);
    if (b == '\\') {
      ++pos_;
      if (at_end()) return error("an escape after '\\'");
      const char e = src_[pos_++];
      switch (e) {
        case 'n':
          return '\n';
        case 'r':
          return '\r';
        case 't':
          return '\t';
        case '\\':
        case '"':
        case '[':
        case ']':
        case '-':
        case '^':
          return static_cast<uint32_t>(e);
        case 'x':
        case 'u':
        case 'U': {
          const size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t cp = 0;
          for (size_t i = 0; i < digits; ++i) {
            if (at_end()) return error("hex digits in the escape");
            const char h = src_[pos_++];
            const int v = h >= '0' && h <= '9'   ? h - '0'
                          : h >= 'a' && h <= 'f' ? h - 'a' + 10
                          : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                 : -1;
            if (v < 0) return error("hex digits in the escape");
            cp = cp * 16 + static_cast<uint32_t>(v);
          }
          if (cp > kMaxCodepoint) return error("a code point up to U+10FFFF");
          return cp;
        }
        default:
          --pos_;
          return error("a known escape (\\n \\r \\t \\\\ \\\" \\[ \\] \\xHH \\uHHHH \\UHHHHHHHH)");
      }
    }
    ++pos_;
    if (b < 0x80) return b;
    int extra = b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : 1;
    uint32_t cp = b & (0x3F >> extra);
    while (extra-- > 0 && !at_end()) cp = (cp << 6) | (static_cast<uint8_t>(src_[pos_++]) & 0x3F);
    return cp;
  }

  absl::StatusOr<int32_t> primary() {
    const char c = src_[pos_];
    if (c == '"') {
      ++pos_;
      std::string bytes;
      while (!at_end() && src_[pos_] != '"') {
        absl::StatusOr<uint32_t> cp = character();
        if (!cp.ok()) return cp.status();
        bytes += utf8_encode(*cp);
      }
      if (at_end()) return error("'\"' closing the string literal");
      ++pos_;
      return g_.literal(bytes);
    }
    if (c == '[') {
      ++pos_;
      bool negated = false;
      if (!at_end() && src_[pos_] == '^') {
        negated = true;
        ++pos_;
      }
      CodepointRanges set;
      while (!at_end() && src_[pos_] != ']') {
        absl::StatusOr<uint32_t> lo = character();
        if (!lo.ok()) return lo.status();
        uint32_t hi = *lo;
        if (pos_ + 1 < src_.size() && src_[pos_] == '-' && src_[pos_ + 1] != ']') {
          ++pos_;
          absl::StatusOr<uint32_t> h = character();
          if (!h.ok()) return h.status();
          hi = *h;
          if (hi < *lo) return error("a range whose end is not below its start");
        }
        set.emplace_back(*lo, hi);
      }
      if (at_end()) return error("']' closing the character class");
      ++pos_;
      return codepoints_expr(g_, negated ? complement(set) : normalize(set));
    }
    if (c == '.') {
      ++pos_;
      return codepoints_expr(g_, {{0, kMaxCodepoint}});
    }
    if (c == '(') {
      if (++depth_ > kMaxNesting) return error(absl::StrCat("groups nested at most ", kMaxNesting, " deep"));
      ++pos_;
      absl::StatusOr<int32_t> inner = alternates();
      --depth_;
      if (!inner.ok()) return inner;
      skip_space();
      if (at_end() || src_[pos_] != ')') return error("')' closing the group");
      ++pos_;
      return inner;
    }
    if (c == '<') return error("a rule, literal or class (token references <[id]> are not supported)");
    if (is_name_char(c)) return g_.rule_ref(rule_id(read_name()));
    return error("a rule name, \"literal\", [class], '.' or '('");
  }

  Grammar g_;
  std::string_view src_;
  size_t pos_ = 0;
  int depth_ = 0;
  std::map<std::string, bool> defined_;
};

}  // namespace

absl::StatusOr<Grammar> parse_gbnf(std::string_view text) {
  return GbnfParser(text).parse();
}

}  // namespace bm::engine::grammar
