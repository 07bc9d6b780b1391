#include "engine/grammar/grammar_cache.h"

namespace bm::engine::grammar {
namespace {

// Configurations one compiled grammar may accumulate (each holds a 1 KiB transition table and maybe a mask) before
// the cache replaces it: deep recursion keeps meeting new stacks, and a popular grammar is never the least recent.
constexpr int32_t kMaxConfigs = 200000;

}  // namespace

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
      // A grammar whose caches have grown past the bound starts afresh for new requests; sequences still using
      // the old one keep it alive until they end.
      if (it->second->second->num_configs() <= kMaxConfigs) {
        entries_.splice(entries_.begin(), entries_, it->second);
        return it->second->second;
      }
      entries_.erase(it->second);
      index_.erase(it);
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
