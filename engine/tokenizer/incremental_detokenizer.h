#pragma once
// Streaming decode, one sequence at a time: the concatenation of everything push() and flush() return equals
// Tokenizer::decode() of the same ids, and every returned piece is valid UTF-8. Only the start of a
// multi-byte character that later tokens may complete (at most 3 bytes) is held back.
#include <cstdint>
#include <string>

namespace bm::engine {

class Tokenizer;

class IncrementalDetokenizer {
 public:
  // `tokenizer` must outlive this object.
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens);

  std::string push(int32_t id);  // returns newly completed text (possibly empty)
  std::string flush();           // what is held back, at the end (an unfinished character becomes U+FFFD)

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;  // bytes of an unfinished character
};

}  // namespace bm::engine
