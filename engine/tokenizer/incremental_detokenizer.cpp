#include "engine/tokenizer/incremental_detokenizer.h"

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace bm::engine {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

// Replacing invalid bytes is local (a maximal invalid subpart never reaches past the next lead byte), so
// decoding everything but an unfinished tail now gives the same text as decoding all bytes at the end.
std::string IncrementalDetokenizer::push(int32_t id) {
  pending_.append(tokenizer_.token_bytes(id, skip_special_tokens_));
  const size_t tail = utf8::incomplete_tail_length(pending_);
  if (tail == pending_.size()) return {};
  std::string out = utf8::sanitize(std::string_view(pending_).substr(0, pending_.size() - tail));
  pending_.erase(0, pending_.size() - tail);
  return out;
}

std::string IncrementalDetokenizer::flush() {
  std::string out = utf8::sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace bm::engine
