#include "engine/template/lexer.h"

#include <array>
#include <cctype>

#include "absl/status/status.h"
#include "engine/template/string_methods.h"

namespace bm::engine {
namespace {

absl::Status lex_error(int line, std::string_view what) {
  return absl::InvalidArgumentError(str_cat("chat template line ", line, ": ", what));
}

// Python's `\s` on str: the trailing part of a regex-stripped run.
bool is_regex_space(std::string_view s, size_t pos, size_t* length) {
  char32_t cp = utf8_decode_one(s, pos, length);
  return is_python_space(cp);
}

std::string rstrip_whitespace(std::string_view text) {
  // Walk forward remembering the end of the last non-space code point (UTF-8 can't be walked backwards safely
  // with invalid bytes).
  size_t keep = 0;
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    bool space = is_regex_space(text, i, &len);
    i += len;
    if (!space) keep = i;
  }
  return std::string(text.substr(0, keep));
}

bool all_whitespace(std::string_view text) {
  if (text.empty()) return false;  // jinja's `\s+` needs at least one character
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    if (!is_regex_space(text, i, &len)) return false;
    i += len;
  }
  return true;
}

size_t skip_whitespace(std::string_view s, size_t pos) {
  while (pos < s.size()) {
    size_t len = 0;
    if (!is_regex_space(s, pos, &len)) break;
    pos += len;
  }
  return pos;
}

int count_newlines(std::string_view s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

constexpr std::array<std::string_view, 26> kOperators = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                                         "/",  "%",  "~",  "(",  ")",  "[",  "]", "{", "}",
                                                         ",",  ".",  ":",  "|",  "=",  "<",  ">", ";"};

// Decodes a Python string literal body the way jinja2 does (unicode-escape over the raw text).
absl::StatusOr<std::string> decode_string(std::string_view body, int line) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c != '\\' || i + 1 >= body.size()) {
      out.push_back(c);
      continue;
    }
    char e = body[++i];
    auto hex = [&](size_t digits) -> absl::StatusOr<char32_t> {
      char32_t v = 0;
      for (size_t k = 1; k <= digits; ++k) {
        if (i + k >= body.size() || !std::isxdigit(static_cast<unsigned char>(body[i + k]))) {
          return lex_error(line, "truncated \\x/\\u escape in a string literal");
        }
        char h = body[i + k];
        v = v * 16 +
            static_cast<char32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (h | 0x20) - 'a' + 10);
      }
      i += digits;
      return v;
    };
    switch (e) {
      case '\n':
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '\'':
        out.push_back('\'');
        break;
      case '"':
        out.push_back('"');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'x':
      case 'u':
      case 'U': {
        auto cp = hex(e == 'x' ? 2 : e == 'u' ? 4 : 8);
        if (!cp.ok()) return cp.status();
        if (*cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) {
          return lex_error(line, "string literal escape is not a valid Unicode scalar value");
        }
        utf8_append(out, *cp);
        break;
      }
      case 'N':
        return lex_error(line, "\\N{...} escapes in string literals are not supported");
      default:
        if (e >= '0' && e <= '7') {
          char32_t v = static_cast<char32_t>(e - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k) {
            v = v * 8 + static_cast<char32_t>(body[++i] - '0');
          }
          utf8_append(out, v);
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  absl::StatusOr<std::vector<Token>> run() {
    while (pos_ < src_.size()) {
      size_t tag = find_tag(pos_);
      std::string text = src_.substr(pos_, tag - pos_);
      if (tag == src_.size()) {
        emit_text(std::move(text));
        pos_ = tag;
        break;
      }
      char kind = src_[tag + 1];
      char sign = tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+') ? src_[tag + 2] : 0;
      if (sign == '-') {
        text = rstrip_whitespace(text);
      } else if (sign != '+' && kind != '{') {
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if ((l_pos > 0 || line_starting_) && all_whitespace(std::string_view(text).substr(l_pos))) {
          text.resize(l_pos);
        }
      }
      int text_newlines = count_newlines(src_.substr(pos_, tag - pos_));
      emit_text(std::move(text));
      line_ += text_newlines;
      pos_ = tag + 2 + (sign != 0 ? 1 : 0);
      absl::Status st = kind == '#' ? comment() : tag_body(kind);
      if (!st.ok()) return st;
    }
    tokens_.push_back(Token{Token::Type::kEof, "", line_});
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return src_.size();
  }

  void emit_text(std::string text) {
    if (!text.empty()) tokens_.push_back(Token{Token::Type::kText, std::move(text), line_});
  }

  // Consumes a tag end at pos_ (`-` strips all following whitespace; trim_blocks drops one newline after
  // `%}` and `#}`; `+` keeps it). Returns false when no end delimiter is at pos_.
  bool consume_end(std::string_view close, bool trim_newline) {
    size_t start = pos_;
    if (src_.compare(pos_, 1 + close.size(), str_cat("-", close)) == 0) {
      pos_ = skip_whitespace(src_, pos_ + 1 + close.size());
    } else if (trim_newline && src_.compare(pos_, 1 + close.size(), str_cat("+", close)) == 0) {
      pos_ += 1 + close.size();
    } else if (src_.compare(pos_, close.size(), close) == 0) {
      pos_ += close.size();
      if (trim_newline && pos_ < src_.size() && src_[pos_] == '\n') ++pos_;
    } else {
      return false;
    }
    std::string_view consumed = std::string_view(src_).substr(start, pos_ - start);
    line_starting_ = !consumed.empty() && consumed.back() == '\n';
    line_ += count_newlines(consumed);
    return true;
  }

  absl::Status comment() {
    int start_line = line_;
    while (true) {
      size_t end = src_.find("#}", pos_);
      if (end == std::string::npos) return lex_error(start_line, "unterminated comment '{#'");
      size_t close_at = end > pos_ && (src_[end - 1] == '-' || src_[end - 1] == '+') ? end - 1 : end;
      line_ += count_newlines(std::string_view(src_).substr(pos_, close_at - pos_));
      pos_ = close_at;
      if (consume_end("#}", true)) return absl::OkStatus();
      pos_ = end + 2;
    }
  }

  absl::Status tag_body(char kind) {
    bool is_block = kind == '%';
    int start_line = line_;
    tokens_.push_back(Token{is_block ? Token::Type::kBlockBegin : Token::Type::kVarBegin, "", line_});
    std::string_view close = is_block ? "%}" : "}}";
    while (true) {
      size_t next = skip_whitespace(src_, pos_);
      line_ += count_newlines(std::string_view(src_).substr(pos_, next - pos_));
      pos_ = next;
      if (pos_ >= src_.size()) {
        return lex_error(start_line, str_cat("unterminated '", is_block ? "{%" : "{{", "' tag"));
      }
      int end_line = line_;
      if (consume_end(close, is_block)) {
        tokens_.push_back(Token{is_block ? Token::Type::kBlockEnd : Token::Type::kVarEnd, "", end_line});
        return absl::OkStatus();
      }
      absl::Status st = expression_token();
      if (!st.ok()) return st;
    }
  }

  absl::Status expression_token() {
    char c = src_[pos_];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t start = pos_;
      while (pos_ < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
      tokens_.push_back(Token{Token::Type::kName, src_.substr(start, pos_ - start), line_});
      return absl::OkStatus();
    }
    if (std::isdigit(static_cast<unsigned char>(c))) return number();
    if (c == '\'' || c == '"') return string_literal(c);
    for (std::string_view op : kOperators) {
      if (src_.compare(pos_, op.size(), op) == 0) {
        tokens_.push_back(Token{Token::Type::kOperator, std::string(op), line_});
        pos_ += op.size();
        return absl::OkStatus();
      }
    }
    return lex_error(line_, str_cat("unexpected character '", std::string(1, c), "' in a tag"));
  }

  size_t digits(size_t p) const {
    // \d+(_\d+)*
    size_t q = p;
    while (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) ++q;
    if (q == p) return p;
    while (q + 1 < src_.size() && src_[q] == '_' && std::isdigit(static_cast<unsigned char>(src_[q + 1]))) {
      ++q;
      while (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) ++q;
    }
    return q;
  }

  size_t exponent(size_t p) const {
    if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      size_t r = digits(q);
      if (r > q) return r;
    }
    return p;
  }

  absl::Status number() {
    size_t start = pos_;
    size_t end = digits(pos_);
    bool is_float = false;
    if (end + 1 < src_.size() && src_[end] == '.' && std::isdigit(static_cast<unsigned char>(src_[end + 1]))) {
      end = exponent(digits(end + 1));
      is_float = true;
    } else if (size_t e = exponent(end); e != end) {
      end = e;
      is_float = true;
    }
    std::string spelling;
    for (size_t i = start; i < end; ++i) {
      if (src_[i] != '_') spelling.push_back(src_[i]);
    }
    pos_ = end;
    tokens_.push_back(Token{is_float ? Token::Type::kFloat : Token::Type::kInt, std::move(spelling), line_});
    return absl::OkStatus();
  }

  absl::Status string_literal(char quote) {
    size_t i = pos_ + 1;
    while (i < src_.size() && src_[i] != quote) i += src_[i] == '\\' ? 2 : 1;
    if (i >= src_.size()) return lex_error(line_, "unterminated string literal");
    auto decoded = decode_string(std::string_view(src_).substr(pos_ + 1, i - pos_ - 1), line_);
    if (!decoded.ok()) return decoded.status();
    tokens_.push_back(Token{Token::Type::kString, *std::move(decoded), line_});
    line_ += count_newlines(std::string_view(src_).substr(pos_, i + 1 - pos_));
    pos_ = i + 1;
    return absl::OkStatus();
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

std::string normalize_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  // jinja2's keep_trailing_newline=False drops one trailing newline of the template source.
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace

absl::StatusOr<std::vector<Token>> tokenize_template(std::string_view source) {
  return Lexer(normalize_newlines(source)).run();
}

}  // namespace bm::engine
