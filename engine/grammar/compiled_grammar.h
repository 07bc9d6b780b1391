#pragma once
// A Grammar compiled for matching against one vocabulary: each rule becomes a small automaton over bytes whose
// edges are byte classes, empty moves and calls of other rules, and matching runs it as a pushdown automaton.
// A parse state is a set of stacks; stacks are interned as linked frames (parent frame, automaton state), so an
// identical stack is always the same number and a whole parse state (a "configuration") is too. That makes three
// things cheap and shared by every sequence that uses the grammar:
//  - transitions: configuration × byte → configuration, computed once and kept in a 256-entry table;
//  - token masks: the tokens allowed in a configuration, computed once by a walk of the vocabulary trie (the
//    states of long strings, arrays and repeated objects recur, so most steps are a cache hit);
//  - rollback: a matcher keeps the configuration after each token, so undoing tokens is popping them.
// Thread-safe: the caches fill under a mutex.
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/grammar/grammar.h"
#include "engine/grammar/token_vocabulary.h"

namespace bm::engine::grammar {

// A set of token ids, stored as whichever of the allowed or the rejected ids is shorter.
struct TokenSet {
  bool rejected = false;     // ids lists the tokens not allowed
  std::vector<int32_t> ids;  // ascending
  int32_t num_allowed = 0;
  int32_t vocab_size = 0;  // ids from here to the end of a logits row are never allowed

  bool allows(int32_t id) const;
  // Sets the logits of tokens not in the set to -infinity.
  void apply(std::span<float> logits) const;
  // Bit i of word i / 32 set for allowed tokens (XGrammar's and vLLM's bitmask layout).
  void fill_bitmask(std::span<uint32_t> words) const;
};

struct CompileLimits {
  int32_t max_states = 1 << 20;  // automaton states after expanding bounded repetition
};

class CompiledGrammar {
 public:
  static constexpr int32_t kDead = 0;  // the configuration no input leaves

  static absl::StatusOr<std::shared_ptr<const CompiledGrammar>> compile(
      const Grammar& grammar, std::shared_ptr<const TokenVocabulary> vocabulary, const CompileLimits& limits = {});

  int32_t start() const { return start_; }
  // kDead when the byte cannot come next.
  int32_t advance(int32_t config, uint8_t byte) const;
  int32_t advance(int32_t config, std::string_view bytes) const;
  // The text so far is a complete sentence of the grammar.
  bool is_accepting(int32_t config) const;
  // Some byte may still follow.
  bool can_continue(int32_t config) const;
  // The tokens whose bytes may come next (end-of-sequence is the sampler's: allowed where is_accepting()).
  std::shared_ptr<const TokenSet> allowed_tokens(int32_t config) const;

  const TokenVocabulary& vocabulary() const { return *vocabulary_; }
  int32_t num_states() const { return static_cast<int32_t>(states_.size()); }
  // The same tokens as allowed_tokens(), by a walk of every trie node (no settling of text by length) and never
  // cached: the reference the faster walk is tested against.
  std::shared_ptr<const TokenSet> allowed_tokens_by_full_walk(int32_t config) const;
  // Cache figures, for benchmarks.
  int32_t num_configs() const;
  int32_t num_cached_masks() const;
  // How the masks allowed_tokens() computed were found, for tests and benchmarks.
  struct MaskCounts {
    int64_t computed = 0;  // cache misses
    // Some text was alive and settled by length: plain tokens only (the rest walked), or every text token
    // (plain bytes and whole UTF-8 characters) by count.
    int64_t by_plain_text = 0;
    int64_t by_text = 0;
    int64_t by_class = 0;  // tokens of one class of plain bytes settled by length (plain bytes told apart)
  };
  MaskCounts mask_counts() const;

 private:
  enum class EdgeKind : uint8_t { kEmpty, kBytes, kCall };
  struct Edge {
    EdgeKind kind;
    int32_t target;  // kCall: the state to return to
    int32_t arg;     // kBytes: class index; kCall: rule
  };
  struct Config {
    std::vector<int32_t> frames;  // frames whose state reads a byte, ascending
    bool accepting = false;
    std::unique_ptr<std::array<int32_t, 256>> next;  // -1: not computed
    std::shared_ptr<const TokenSet> mask;
    // Where every plain byte / every multi-byte UTF-8 character leads (kNotComputed, kMixed: not all alike).
    int32_t plain_next = kNotComputed;
    int32_t character_next = kNotComputed;
  };
  static constexpr int32_t kNotComputed = -1;
  static constexpr int32_t kMixed = -2;

  CompiledGrammar() = default;
  absl::Status build(const Grammar& grammar, const CompileLimits& limits);
  absl::StatusOr<int32_t> compile_expr(const Grammar& grammar, int32_t expr, int32_t from, const CompileLimits& limits);
  int32_t new_state();
  absl::Status check_left_recursion(const Grammar& grammar) const;

  int32_t frame(int32_t parent, int32_t state) const;
  int32_t close(std::vector<int32_t>& seeds) const;
  int32_t advance_locked(int32_t config, uint8_t byte) const;
  // A walk's position: the configuration at one depth of the trie and its transition table (null: none yet).
  struct Level {
    int32_t config;
    const std::array<int32_t, 256>* next;
  };
  // counts: where allowed_tokens() records how it went; null for the full walk.
  std::shared_ptr<const TokenSet> compute_mask(int32_t config, MaskCounts* counts) const;
  int32_t plain_step(int32_t config) const;
  int32_t character_step(int32_t config) const;
  Level step(Level& from, uint8_t byte) const;
  // allowed: a bit per token id.
  bool walk_by_length(std::vector<Level>& levels, std::vector<uint64_t>& allowed, MaskCounts* counts) const;
  bool walk_by_class(std::vector<Level>& levels, std::vector<uint64_t>& allowed, MaskCounts* counts) const;
  void walk_range(std::vector<Level>& levels, int32_t begin, int32_t end, std::vector<uint64_t>& allowed) const;

  std::shared_ptr<const TokenVocabulary> vocabulary_;
  std::vector<std::vector<Edge>> states_;
  std::vector<int32_t> final_of_rule_;  // by state: the rule it ends, or -1
  std::vector<int32_t> rule_start_;
  std::vector<ByteClass> classes_;
  int32_t root_rule_ = -1;
  int32_t start_ = kDead;

  mutable std::mutex mutex_;
  mutable std::vector<std::pair<int32_t, int32_t>> frames_;  // (parent frame or -1, state)
  mutable std::unordered_map<uint64_t, int32_t> frame_ids_;
  mutable std::vector<Config> configs_;
  mutable std::unordered_map<std::string, int32_t> config_ids_;
  mutable std::vector<uint32_t> visit_stamp_;
  mutable uint32_t stamp_ = 0;
  mutable int32_t num_cached_masks_ = 0;
  mutable MaskCounts mask_counts_;
};

}  // namespace bm::engine::grammar
