#pragma once
// A context-free grammar over bytes: named rules whose bodies are expressions built from byte classes,
// sequences, alternatives, bounded or unbounded repetition and references to rules. Every front end (GBNF,
// JSON Schema, regular expressions, choices) builds one of these; GrammarAutomaton compiles it for matching.
// Working on bytes, not characters, lets the matcher walk token byte strings directly (tokens may split UTF-8).
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bm::engine::grammar {

// A set of bytes.
struct ByteClass {
  std::array<uint64_t, 4> bits{};

  static ByteClass of(uint8_t b) { return range(b, b); }
  static ByteClass range(uint8_t lo, uint8_t hi);
  void add(uint8_t lo, uint8_t hi);
  void add(const ByteClass& other);
  ByteClass complement() const;
  bool has(uint8_t b) const { return (bits[b >> 6] >> (b & 63)) & 1; }
  bool empty() const { return (bits[0] | bits[1] | bits[2] | bits[3]) == 0; }
  bool operator==(const ByteClass&) const = default;
};

enum class ExprKind { kBytes, kSequence, kChoice, kRepeat, kRule };

struct Expr {
  ExprKind kind = ExprKind::kSequence;
  ByteClass bytes;                // kBytes
  std::vector<int32_t> children;  // kSequence, kChoice; kRepeat: one
  int32_t min = 0;                // kRepeat
  int32_t max = 0;                // kRepeat; kUnbounded: no upper bound
  int32_t rule = -1;              // kRule
};

class Grammar {
 public:
  static constexpr int32_t kUnbounded = -1;

  // A new rule with no body yet (rules may refer to each other before their bodies exist).
  int32_t add_rule(std::string name);
  void set_body(int32_t rule, int32_t expr);
  std::optional<int32_t> find_rule(std::string_view name) const;
  // A rule name not used yet, derived from `base`.
  std::string unique_name(std::string_view base) const;

  int32_t bytes(const ByteClass& c);
  int32_t literal(std::string_view text);
  int32_t sequence(std::vector<int32_t> items);
  int32_t choice(std::vector<int32_t> items);
  int32_t repeat(int32_t item, int32_t min, int32_t max);
  int32_t optional(int32_t item) { return repeat(item, 0, 1); }
  int32_t star(int32_t item) { return repeat(item, 0, kUnbounded); }
  int32_t plus(int32_t item) { return repeat(item, 1, kUnbounded); }
  int32_t rule_ref(int32_t rule);
  int32_t empty() { return sequence({}); }

  void set_root(int32_t rule) { root_ = rule; }
  int32_t root() const { return root_; }
  int32_t num_rules() const { return static_cast<int32_t>(rule_names_.size()); }
  const std::string& rule_name(int32_t rule) const { return rule_names_[rule]; }
  // -1 while unset.
  int32_t rule_body(int32_t rule) const { return rule_bodies_[rule]; }
  const Expr& expr(int32_t id) const { return exprs_[id]; }
  int32_t num_exprs() const { return static_cast<int32_t>(exprs_.size()); }

  // GBNF text of the whole grammar (for error messages, tests and debugging).
  std::string to_string() const;

 private:
  int32_t add(Expr e);
  void print(int32_t expr, std::string& out, bool nested) const;

  std::vector<Expr> exprs_;
  std::vector<std::string> rule_names_;
  std::vector<int32_t> rule_bodies_;
  int32_t root_ = -1;
};

}  // namespace bm::engine::grammar
