#pragma once
// One sequence's progress through a compiled grammar: which tokens may come next, advancing by the token
// sampled, and rolling back (for speculative decoding and jump-forward later). Not thread-safe; one per sequence.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/grammar/compiled_grammar.h"

namespace bm::engine::grammar {

class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar);

  // Advances by a token's bytes; false (and nothing changes) when the grammar does not allow it.
  bool accept_token(int32_t token_id);
  // Ends the text (an end-of-sequence token); false when the text so far is not a sentence of the grammar.
  bool accept_end();
  // Undoes the last `num_tokens` accept_token / accept_end calls.
  void rollback(int32_t num_tokens);
  int32_t num_accepted() const { return static_cast<int32_t>(history_.size()) - 1; }

  // The text so far is complete (end-of-sequence may come next).
  bool is_accepting() const;
  // Complete and nothing may follow, or ended: only end-of-sequence is left.
  bool is_terminated() const;
  // Tokens that may come next, end-of-sequence tokens excluded (the sampler adds those where is_accepting()).
  std::shared_ptr<const TokenSet> allowed_tokens() const;
  const CompiledGrammar& grammar() const { return *grammar_; }

 private:
  std::shared_ptr<const CompiledGrammar> grammar_;
  std::vector<int32_t> history_;  // configuration after each accepted token; front: the start
  std::vector<char> ended_;       // by history entry: accept_end() made it
};

}  // namespace bm::engine::grammar
