#include "engine/grammar/grammar.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace bm::engine::grammar {

ByteClass ByteClass::range(uint8_t lo, uint8_t hi) {
  ByteClass c;
  c.add(lo, hi);
  return c;
}

void ByteClass::add(uint8_t lo, uint8_t hi) {
  for (int b = lo; b <= hi; ++b) bits[b >> 6] |= uint64_t{1} << (b & 63);
}

void ByteClass::add(const ByteClass& other) {
  for (int i = 0; i < 4; ++i) bits[i] |= other.bits[i];
}

ByteClass ByteClass::complement() const {
  ByteClass c;
  for (int i = 0; i < 4; ++i) c.bits[i] = ~bits[i];
  return c;
}

int32_t Grammar::add_rule(std::string name) {
  rule_names_.push_back(std::move(name));
  rule_bodies_.push_back(-1);
  return num_rules() - 1;
}

void Grammar::set_body(int32_t rule, int32_t expr) {
  BM_CHECK(rule >= 0 && rule < num_rules() && expr >= 0 && expr < num_exprs());
  rule_bodies_[rule] = expr;
}

std::optional<int32_t> Grammar::find_rule(std::string_view name) const {
  for (int32_t i = 0; i < num_rules(); ++i)
    if (rule_names_[i] == name) return i;
  return std::nullopt;
}

std::string Grammar::unique_name(std::string_view base) const {
  std::string name(base.empty() ? "r" : base);
  if (!find_rule(name)) return name;
  for (int i = 1;; ++i) {
    std::string candidate = absl::StrCat(name, "-", i);
    if (!find_rule(candidate)) return candidate;
  }
}

int32_t Grammar::add(Expr e) {
  exprs_.push_back(std::move(e));
  return num_exprs() - 1;
}

int32_t Grammar::bytes(const ByteClass& c) {
  Expr e;
  e.kind = ExprKind::kBytes;
  e.bytes = c;
  return add(std::move(e));
}

int32_t Grammar::literal(std::string_view text) {
  std::vector<int32_t> items;
  for (char ch : text) items.push_back(bytes(ByteClass::of(static_cast<uint8_t>(ch))));
  if (items.size() == 1) return items[0];
  return sequence(std::move(items));
}

int32_t Grammar::sequence(std::vector<int32_t> items) {
  if (items.size() == 1) return items[0];
  Expr e;
  e.kind = ExprKind::kSequence;
  e.children = std::move(items);
  return add(std::move(e));
}

int32_t Grammar::choice(std::vector<int32_t> items) {
  if (items.size() == 1) return items[0];
  Expr e;
  e.kind = ExprKind::kChoice;
  e.children = std::move(items);
  return add(std::move(e));
}

int32_t Grammar::repeat(int32_t item, int32_t min, int32_t max) {
  BM_CHECK(min >= 0 && (max == kUnbounded || max >= min));
  Expr e;
  e.kind = ExprKind::kRepeat;
  e.children = {item};
  e.min = min;
  e.max = max;
  return add(std::move(e));
}

int32_t Grammar::rule_ref(int32_t rule) {
  Expr e;
  e.kind = ExprKind::kRule;
  e.rule = rule;
  return add(std::move(e));
}

namespace {

void print_byte(uint8_t b, std::string& out) {
  if (b == '\\' || b == '"' || b == ']' || b == '[' || b == '^' || b == '-') {
    out += '\\';
    out += static_cast<char>(b);
  } else if (b < 0x20 || b >= 0x7f) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02x", b);
    out += buf;
  } else {
    out += static_cast<char>(b);
  }
}

}  // namespace

void Grammar::print(int32_t id, std::string& out, bool nested) const {
  const Expr& e = exprs_[id];
  switch (e.kind) {
    case ExprKind::kBytes: {
      int count = 0;
      for (int b = 0; b < 256; ++b) count += e.bytes.has(static_cast<uint8_t>(b));
      if (count == 1) {
        for (int b = 0; b < 256; ++b)
          if (e.bytes.has(static_cast<uint8_t>(b))) {
            out += '"';
            print_byte(static_cast<uint8_t>(b), out);
            out += '"';
          }
        return;
      }
      out += '[';
      for (int b = 0; b < 256;) {
        if (!e.bytes.has(static_cast<uint8_t>(b))) {
          ++b;
          continue;
        }
        int end = b;
        while (end + 1 < 256 && e.bytes.has(static_cast<uint8_t>(end + 1))) ++end;
        print_byte(static_cast<uint8_t>(b), out);
        if (end > b) {
          out += '-';
          print_byte(static_cast<uint8_t>(end), out);
        }
        b = end + 1;
      }
      out += ']';
      return;
    }
    case ExprKind::kSequence:
    case ExprKind::kChoice: {
      const bool choice = e.kind == ExprKind::kChoice;
      if (e.children.empty()) {
        out += "\"\"";
        return;
      }
      if (nested) out += '(';
      for (size_t i = 0; i < e.children.size(); ++i) {
        if (i > 0) out += choice ? " | " : " ";
        print(e.children[i], out, true);
      }
      if (nested) out += ')';
      return;
    }
    case ExprKind::kRepeat:
      print(e.children[0], out, true);
      if (e.min == 0 && e.max == 1)
        out += '?';
      else if (e.min == 0 && e.max == kUnbounded)
        out += '*';
      else if (e.min == 1 && e.max == kUnbounded)
        out += '+';
      else if (e.max == kUnbounded)
        absl::StrAppend(&out, "{", e.min, ",}");
      else
        absl::StrAppend(&out, "{", e.min, ",", e.max, "}");
      return;
    case ExprKind::kRule:
      out += rule_names_[e.rule];
      return;
  }
}

std::string Grammar::to_string() const {
  std::string out;
  for (int32_t r = 0; r < num_rules(); ++r) {
    absl::StrAppend(&out, rule_names_[r], " ::= ");
    if (rule_bodies_[r] >= 0) print(rule_bodies_[r], out, false);
    out += '\n';
  }
  return out;
}

}  // namespace bm::engine::grammar
