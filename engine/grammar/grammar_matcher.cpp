#include "engine/grammar/grammar_matcher.h"

#include "common/check.h"

namespace bm::engine::grammar {

GrammarMatcher::GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar)
    : grammar_(std::move(grammar)), history_{grammar_->start()}, ended_{0} {}

bool GrammarMatcher::accept_token(int32_t token_id) {
  if (ended_.back() || token_id < 0 || token_id >= grammar_->vocabulary().vocab_size()) return false;
  const std::string& bytes = grammar_->vocabulary().token_bytes(token_id);
  if (bytes.empty()) return false;
  const int32_t next = grammar_->advance(history_.back(), bytes);
  if (next == CompiledGrammar::kDead) return false;
  history_.push_back(next);
  ended_.push_back(0);
  return true;
}

bool GrammarMatcher::accept_end() {
  if (ended_.back() || !grammar_->is_accepting(history_.back())) return false;
  history_.push_back(history_.back());
  ended_.push_back(1);
  return true;
}

void GrammarMatcher::rollback(int32_t num_tokens) {
  BM_CHECK(num_tokens >= 0 && num_tokens <= num_accepted());
  history_.resize(history_.size() - static_cast<size_t>(num_tokens));
  ended_.resize(history_.size());
}

bool GrammarMatcher::is_accepting() const {
  return !ended_.back() && grammar_->is_accepting(history_.back());
}

bool GrammarMatcher::is_terminated() const {
  return ended_.back() || (grammar_->is_accepting(history_.back()) && !grammar_->can_continue(history_.back()));
}

std::shared_ptr<const TokenSet> GrammarMatcher::allowed_tokens() const {
  if (ended_.back()) return std::make_shared<TokenSet>();
  return grammar_->allowed_tokens(history_.back());
}

}  // namespace bm::engine::grammar
