#include "engine/grammar/grammar_cache.h"

namespace bm::engine::grammar {

GrammarCache::GrammarCache(std::shared_ptr<const TokenVocabulary> vocabulary, size_t capacity)
    : vocabulary_(std::move(vocabulary)), capacity_(capacity) {}

size_t GrammarCache::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> GrammarCache::get(const GrammarRequest& request) {
  const std::string key = request.cache_key();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = index_.find(key); it != index_.end()) {
      entries_.splice(entries_.begin(), entries_, it->second);
      return it->second->second;
    }
  }
  // Compiled outside the lock: another request's compile should not wait behind this one. Two threads compiling
  // the same key both succeed; the second one's result replaces nothing.
  absl::StatusOr<Grammar> grammar = build_grammar(request);
  if (!grammar.ok()) return grammar.status();
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> compiled = CompiledGrammar::compile(*grammar, vocabulary_);
  if (!compiled.ok()) return compiled.status();
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = index_.find(key); it != index_.end()) return it->second->second;
  entries_.emplace_front(key, *compiled);
  index_[key] = entries_.begin();
  while (entries_.size() > capacity_) {
    index_.erase(entries_.back().first);
    entries_.pop_back();
  }
  return *compiled;
}

}  // namespace bm::engine::grammar
