#pragma once
// The model's vocabulary as byte strings, arranged as a trie in depth-first order so that one walk visits every
// token while sharing the work of common prefixes: a grammar state's allowed tokens are found by advancing the
// automaton once per trie node, and a dead state skips the whole subtree.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine/grammar/grammar.h"

namespace bm::engine {
class Tokenizer;
}

namespace bm::engine::grammar {

class TokenVocabulary {
 public:
  // token_bytes[id]: what token `id` adds to the text; empty: a grammar never allows it (special tokens).
  // vocab_size: the model's logits row, at least token_bytes.size() (ids past the tokenizer are never allowed).
  TokenVocabulary(std::vector<std::string> token_bytes, int32_t vocab_size);
  // Special tokens are left out; the grammar lets the sampler add end-of-sequence ids where it accepts.
  static std::shared_ptr<const TokenVocabulary> from_tokenizer(const Tokenizer& tokenizer, int32_t vocab_size);

  int32_t vocab_size() const { return vocab_size_; }
  const std::string& token_bytes(int32_t id) const { return token_bytes_[id]; }

  // Trie nodes in depth-first order; node 0 is the root (the empty prefix).
  int32_t num_nodes() const { return static_cast<int32_t>(node_byte_.size()); }
  uint8_t node_byte(int32_t node) const { return node_byte_[node]; }
  int32_t node_depth(int32_t node) const { return node_depth_[node]; }
  // The first node after `node`'s subtree.
  int32_t subtree_end(int32_t node) const { return subtree_end_[node]; }
  // Tokens whose bytes end at `node`: token_ids()[tokens_begin(node) .. tokens_begin(node + 1)).
  int32_t tokens_begin(int32_t node) const { return tokens_begin_[node]; }
  const std::vector<int32_t>& token_ids() const { return token_ids_; }
  int32_t max_depth() const { return max_depth_; }
  // node_byte | node_depth << 8 | (tokens end here) << 31, one word per node: a walk over the whole trie reads
  // one stream instead of three arrays (333k nodes on Qwen2.5).
  static constexpr uint32_t kHasTokens = 1u << 31;
  const std::vector<uint32_t>& node_words() const { return node_words_; }

  // Plain text: the printable ASCII bytes but '"' and '\\', which JSON strings and counted repetitions of a
  // character class accept one byte at a time. About 60% of Qwen2.5's trie nodes spell plain text only, so a
  // grammar state that treats every plain byte alike can settle those tokens by their length instead of walking.
  static bool is_plain(uint8_t b) { return b >= 0x20 && b < 0x7f && b != '"' && b != '\\'; }
  // Ids of the tokens made of plain bytes only, shortest first; the first num_plain_up_to(n) are at most n long.
  const std::vector<int32_t>& plain_ids_by_length() const { return plain_ids_by_length_; }
  int32_t num_plain_up_to(int32_t length) const;
  // The nodes that leave plain text (a non-plain byte after a plain prefix), by depth: every node that is not
  // plain text is in exactly one of their subtrees. The first num_exits_up_to(d) are at depth at most d.
  const std::vector<int32_t>& exit_nodes() const { return exit_nodes_; }
  int32_t num_exits_up_to(int32_t depth) const;

  // Text: plain bytes and whole UTF-8 characters (valid encodings of two to four bytes). A JSON string accepts any
  // of them one character at a time, and maxLength counts a character as one whatever its length, so a grammar
  // state that moves alike by every plain byte and every multi-byte character settles text tokens by how many
  // characters they hold, CJK and emoji included (40% of Qwen2.5's trie nodes are not plain, mostly such text).
  // Ids of the text tokens that are not plain, by their count: their characters, plus one when the token ends
  // inside a character (that piece needs a live state after it as a whole character does). The first
  // num_text_up_to(n) count at most n.
  const std::vector<int32_t>& text_ids_by_count() const { return text_ids_by_count_; }
  int32_t num_text_up_to(int32_t count) const;
  // The nodes that leave text (a byte that neither is plain nor goes on a valid UTF-8 character) after a text
  // prefix: every node that is not text is in exactly one of their subtrees. By `chars`, then in trie order; the
  // first num_text_exits_up_to(n) have at most n whole characters before them.
  struct TextExit {
    int32_t node;
    int32_t chars;           // whole characters in the prefix before the node
    int32_t partial_length;  // bytes of an incomplete character between those characters and the node (0-3)
    uint32_t partial;        // those bytes, the first in the low byte
  };
  const std::vector<TextExit>& text_exits() const { return text_exits_; }
  int32_t num_text_exits_up_to(int32_t chars) const;

  // Sets `bits` (a bit per id: bit id % 64 of word id / 64, (vocab_size + 63) / 64 words) to the tokens settled at
  // a count of at most n: the plain tokens of length at most n, and with `text` the text tokens counting at most
  // n too. A copy of a set kept for every count up to kKeptCounts (the counts of nearly every token), then the
  // few longer tokens one by one: a mask inside a string costs a 19 KB copy instead of 150k scattered writes.
  void settled_bits(int32_t n, bool text, std::vector<uint64_t>& bits) const;
  static constexpr int32_t kKeptCounts = 16;

  // Tokens made only of the bytes of one class, settled by length as plain text is where a grammar state moves
  // alike by every byte of the class but not by every plain byte (an email's local part, a hostname's labels, hex
  // digits). Built on first use of a class (one pass over the trie) and kept, for at most kMaxClassIndexes
  // classes; null past that. Thread-safe.
  struct ClassIndex {
    std::vector<int32_t> ids_by_length;  // the tokens of class bytes only, shortest first
    std::vector<int32_t> ids_up_to;      // [n]: how many of them are at most n bytes long
    std::vector<int32_t> exits;          // the nodes that leave the class after a prefix in it, by depth
    std::vector<int32_t> exits_up_to;    // [d]: how many exits are at depth at most d
  };
  std::shared_ptr<const ClassIndex> class_index(const ByteClass& bytes) const;
  static constexpr size_t kMaxClassIndexes = 32;  // each up to a few hundred KB on Qwen2.5

 private:
  int32_t vocab_size_;
  std::vector<std::string> token_bytes_;
  std::vector<uint8_t> node_byte_;
  std::vector<int32_t> node_depth_;
  std::vector<int32_t> subtree_end_;
  std::vector<int32_t> tokens_begin_;  // num_nodes() + 1 entries
  std::vector<int32_t> token_ids_;
  std::vector<uint32_t> node_words_;
  std::vector<int32_t> plain_ids_by_length_;
  std::vector<int32_t> exit_nodes_;
  std::vector<int32_t> text_ids_by_count_;
  std::vector<int32_t> text_up_to_;  // [n]: how many text ids count at most n
  std::vector<TextExit> text_exits_;
  std::vector<int32_t> text_exits_up_to_;            // [n]: how many text exits have at most n characters before them
  std::vector<std::vector<uint64_t>> kept_bits_[2];  // [text][n], n up to kKeptCounts
  int32_t max_depth_ = 0;
  mutable std::mutex class_mutex_;
  mutable std::vector<std::pair<ByteClass, std::shared_ptr<const ClassIndex>>> class_indexes_;
};

}  // namespace bm::engine::grammar
