#pragma once
// Added tokens (specials such as <|im_start|> and extra ones such as <tool_call>) are cut out of the text
// before the pre-tokenizer runs, leftmost-longest first, honouring their flags the way Hugging Face
// `tokenizers` does: single_word (no word character may touch the match), lstrip / rstrip (the match also
// swallows the whitespace before / after it).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bm::engine {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;  // matched against the normalized text instead of the input
  bool single_word = false;
  bool special = false;  // dropped by decode(skip_special_tokens = true)
};

class AddedTokenMatcher {
 public:
  struct Segment {
    size_t begin;
    size_t end;
    int32_t id;  // kText for ordinary text
  };
  static constexpr int32_t kText = -1;

  AddedTokenMatcher() = default;
  // `patterns[i]` is the text to find for `tokens[i]` (its content, or its normalized content).
  AddedTokenMatcher(const std::vector<AddedToken>& tokens, const std::vector<std::string>& patterns);

  bool empty() const { return nodes_.size() <= 1; }
  // Appends the segments covering `text`: ordinary text and matched tokens, in order; no empty text segment.
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
    int32_t token = -1;                                       // index into tokens_ when a pattern ends here
  };
  struct Match {
    size_t begin;
    size_t end;
    int32_t token;
  };
  int32_t child(int32_t node, unsigned char byte) const;
  bool find_longest_at(std::string_view text, size_t pos, Match& match) const;

  std::vector<Node> nodes_{1};
  std::vector<AddedToken> tokens_;
  bool first_bytes_[256] = {};
};

}  // namespace bm::engine
