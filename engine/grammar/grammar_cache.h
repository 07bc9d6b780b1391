#pragma once
// Compiled grammars of one vocabulary, by request: an agent sends the same schema with every call, and the
// automaton's transition and mask caches grow warmer with each use. Least recently used entries leave first.
// Thread-safe.
#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "engine/grammar/compiled_grammar.h"
#include "engine/grammar/grammar_request.h"

namespace bm::engine::grammar {

class GrammarCache {
 public:
  GrammarCache(std::shared_ptr<const TokenVocabulary> vocabulary, size_t capacity = 64);

  // Bad input (a schema, regex or grammar that cannot be used) is InvalidArgument with a sentence naming it.
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> get(const GrammarRequest& request);
  const TokenVocabulary& vocabulary() const { return *vocabulary_; }
  size_t size() const;

 private:
  std::shared_ptr<const TokenVocabulary> vocabulary_;
  size_t capacity_;
  mutable std::mutex mutex_;
  std::list<std::pair<std::string, std::shared_ptr<const CompiledGrammar>>> entries_;  // most recent first
  std::unordered_map<std::string, decltype(entries_)::iterator> index_;
};

}  // namespace bm::engine::grammar
