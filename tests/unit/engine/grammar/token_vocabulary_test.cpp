#include "engine/grammar/token_vocabulary.h"

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <set>

#include "engine/tokenizer/utf8.h"
#include "gtest/gtest.h"

namespace bm::engine::grammar {
namespace {

TEST(TokenVocabulary, TrieSpellsEveryTokenInDepthFirstOrder) {
  std::vector<std::string> bytes = {"", "a", "ab", "abc", "b", "ab", "ba", "", "\xff\x01"};
  TokenVocabulary v(bytes, 12);
  EXPECT_EQ(v.vocab_size(), 12);
  // Walk the trie rebuilding each node's prefix; every token must sit at the node spelling its bytes.
  std::vector<std::string> prefix(static_cast<size_t>(v.max_depth()) + 1);
  std::map<int32_t, std::string> found;
  for (int32_t node = 1; node < v.num_nodes(); ++node) {
    const int32_t d = v.node_depth(node);
    prefix[d] = prefix[d - 1] + static_cast<char>(v.node_byte(node));
    EXPECT_GT(v.subtree_end(node), node);
    for (int32_t t = v.tokens_begin(node); t < v.tokens_begin(node + 1); ++t) found[v.token_ids()[t]] = prefix[d];
    // Children lie inside the subtree and are one deeper.
    if (node + 1 < v.subtree_end(node)) EXPECT_EQ(v.node_depth(node + 1), d + 1);
  }
  std::map<int32_t, std::string> expected;
  for (int32_t id = 0; id < static_cast<int32_t>(bytes.size()); ++id)
    if (!bytes[id].empty()) expected[id] = bytes[id];
  EXPECT_EQ(found, expected);
  EXPECT_EQ(v.num_nodes(), 1 + 3 + 2 + 2);  // a ab abc | b ba | \xff \xff\x01
}

// Text as the tokenizer's UTF-8 decoder sees it: plain bytes and valid multi-byte characters, possibly ending in
// a piece of one. The count: characters, plus one for that piece; nullopt when `s` is not text.
std::optional<int32_t> text_count(std::string_view s) {
  const size_t piece = utf8::incomplete_tail_length(s);
  int32_t count = piece > 0;
  for (size_t pos = 0; pos < s.size() - piece;) {
    const utf8::Decoded d = utf8::decode(s, pos);
    if (!d.valid || (d.length == 1 && !TokenVocabulary::is_plain(static_cast<uint8_t>(s[pos])))) return std::nullopt;
    pos += static_cast<size_t>(d.length);
    ++count;
  }
  return count;
}

// The text lists against the tokenizer's decoder, over whole characters of every UTF-8 length, pieces of them,
// invalid sequences (overlong, surrogates, past U+10FFFF, stray continuation bytes) and non-plain ASCII.
TEST(TokenVocabulary, TextTokensByCountAndTextExitsAgreeWithTheDecoder) {
  const std::vector<std::string> pieces = {"a",
                                           " ",
                                           "\"",
                                           "\\",
                                           "\n",
                                           "\x7f",
                                           "\xc3\xa9",
                                           "\xe4\xb8\xad",
                                           "\xe0\xa4\x85",
                                           "\xed\x9f\xbf",
                                           "\xf0\x9f\x98\x80",
                                           "\xf4\x8f\xbf\xbf",
                                           "\xc3",
                                           "\xe4\xb8",
                                           "\xf0\x9f\x98",
                                           "\x80",
                                           "\xc0\xaf",
                                           "\xe0\x80",
                                           "\xed\xa0\x80",
                                           "\xf4\x90",
                                           "\xf5",
                                           "\xff"};
  std::vector<std::string> bytes = {""};
  std::mt19937 rng(5);
  for (int i = 0; i < 3000; ++i) {
    std::string t;
    const size_t length = 1 + rng() % 24;
    while (t.size() < length) t += pieces[rng() % pieces.size()];
    bytes.push_back(t);
  }
  const TokenVocabulary v(bytes, static_cast<int32_t>(bytes.size()));

  // Ids by count: the first num_text_up_to(n) are exactly the non-plain text tokens counting at most n.
  const std::vector<int32_t>& ids = v.text_ids_by_count();
  for (int32_t n = 0; n <= v.max_depth(); ++n) {
    std::set<int32_t> expected, listed(ids.begin(), ids.begin() + v.num_text_up_to(n));
    for (int32_t id = 1; id < static_cast<int32_t>(bytes.size()); ++id) {
      const std::string& s = bytes[id];
      const bool plain =
          std::all_of(s.begin(), s.end(), [](char c) { return TokenVocabulary::is_plain(static_cast<uint8_t>(c)); });
      if (!plain && text_count(s) && *text_count(s) <= n) expected.insert(id);
    }
    EXPECT_EQ(listed, expected) << "count " << n;
    EXPECT_EQ(listed.size(), static_cast<size_t>(v.num_text_up_to(n)));  // no id twice
  }
  EXPECT_EQ(v.num_text_up_to(v.max_depth()), static_cast<int32_t>(ids.size()));

  // The settled bits: the plain tokens of length at most n, and with text the text ones counting at most n, below
  // and past the counts kept as whole sets.
  ASSERT_GT(v.max_depth(), TokenVocabulary::kKeptCounts);
  for (int text = 0; text < 2; ++text)
    for (int32_t n = 0; n <= v.max_depth(); ++n) {
      std::vector<uint64_t> bits(99, 7);  // any size and content: replaced
      v.settled_bits(n, text, bits);
      ASSERT_EQ(bits.size(), (bytes.size() + 63) / 64);
      for (int32_t id = 0; id < static_cast<int32_t>(bytes.size()); ++id) {
        const std::string& s = bytes[id];
        const bool plain =
            std::all_of(s.begin(), s.end(), [](char c) { return TokenVocabulary::is_plain(static_cast<uint8_t>(c)); });
        const bool settled =
            !s.empty() && (plain ? static_cast<int32_t>(s.size()) <= n : text && text_count(s) && *text_count(s) <= n);
        EXPECT_EQ((bits[id / 64] >> (id % 64)) & 1, settled ? 1u : 0u) << "id " << id << " n " << n << " text " << text;
      }
    }

  // Exits: the nodes whose prefix is not text below a text prefix, with that prefix's whole characters and piece.
  std::vector<std::string> prefix(static_cast<size_t>(v.max_depth()) + 1);
  std::vector<std::string> node_prefix(static_cast<size_t>(v.num_nodes()));
  std::set<int32_t> expected_exits;
  for (int32_t node = 1; node < v.num_nodes(); ++node) {
    const int32_t d = v.node_depth(node);
    prefix[d] = prefix[d - 1] + static_cast<char>(v.node_byte(node));
    node_prefix[node] = prefix[d];
    if (text_count(prefix[d - 1]) && !text_count(prefix[d])) expected_exits.insert(node);
  }
  std::set<int32_t> exits;
  int32_t previous_chars = 0;
  for (const TokenVocabulary::TextExit& exit : v.text_exits()) {
    exits.insert(exit.node);
    const std::string before = node_prefix[exit.node].substr(0, node_prefix[exit.node].size() - 1);
    const size_t piece = utf8::incomplete_tail_length(before);
    EXPECT_EQ(exit.partial_length, static_cast<int32_t>(piece)) << before;
    std::string partial;
    for (int32_t k = 0; k < exit.partial_length; ++k) partial += static_cast<char>(exit.partial >> (8 * k));
    EXPECT_EQ(partial, before.substr(before.size() - piece)) << before;
    EXPECT_EQ(exit.chars, *text_count(before) - (piece > 0)) << before;
    EXPECT_GE(exit.chars, previous_chars);
    previous_chars = exit.chars;
  }
  EXPECT_EQ(exits, expected_exits);
  EXPECT_EQ(exits.size(), v.text_exits().size());
  for (int32_t n = 0; n <= v.max_depth(); ++n) {
    const int32_t up_to = v.num_text_exits_up_to(n);
    EXPECT_TRUE(up_to == static_cast<int32_t>(v.text_exits().size()) || v.text_exits()[up_to].chars > n);
    EXPECT_TRUE(up_to == 0 || v.text_exits()[up_to - 1].chars <= n);
  }
}

// A class index lists exactly the tokens made of the class's bytes by length, and the nodes that leave the class
// below a prefix in it by depth; asking again gives the same index.
TEST(TokenVocabulary, ClassIndexListsTheClassTokensAndItsExits) {
  std::vector<std::string> bytes = {""};
  const std::string alphabet = "ab0.-@ \"\xc3\xa9";
  std::mt19937 rng(9);
  for (int i = 0; i < 2000; ++i) {
    std::string t;
    for (size_t n = 1 + rng() % 20; t.size() < n;) t += alphabet[rng() % alphabet.size()];
    bytes.push_back(t);
  }
  const TokenVocabulary v(bytes, static_cast<int32_t>(bytes.size()) + 5);
  ByteClass cls = ByteClass::range('a', 'b');
  cls.add('0', '0');
  cls.add('-', '-');
  std::shared_ptr<const TokenVocabulary::ClassIndex> index = v.class_index(cls);
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(v.class_index(cls), index);
  auto in_class = [&](const std::string& s) {
    return std::all_of(s.begin(), s.end(), [&](char c) { return cls.has(static_cast<uint8_t>(c)); });
  };
  for (int32_t n = 0; n <= v.max_depth(); ++n) {
    std::set<int32_t> expected;
    for (int32_t id = 1; id < static_cast<int32_t>(bytes.size()); ++id)
      if (in_class(bytes[id]) && static_cast<int32_t>(bytes[id].size()) <= n) expected.insert(id);
    const std::set<int32_t> listed(index->ids_by_length.begin(), index->ids_by_length.begin() + index->ids_up_to[n]);
    EXPECT_EQ(listed, expected) << n;
    EXPECT_EQ(listed.size(), static_cast<size_t>(index->ids_up_to[n]));
  }
  std::vector<std::string> prefix(static_cast<size_t>(v.max_depth()) + 1);
  std::set<int32_t> expected_exits;
  for (int32_t node = 1; node < v.num_nodes(); ++node) {
    const int32_t d = v.node_depth(node);
    prefix[d] = prefix[d - 1] + static_cast<char>(v.node_byte(node));
    if (in_class(prefix[d - 1]) && !in_class(prefix[d])) expected_exits.insert(node);
  }
  EXPECT_EQ(std::set<int32_t>(index->exits.begin(), index->exits.end()), expected_exits);
  for (int32_t d = 1; d <= v.max_depth(); ++d)
    for (int32_t i = index->exits_up_to[d - 1]; i < index->exits_up_to[d]; ++i)
      EXPECT_EQ(v.node_depth(index->exits[i]), d);
}

}  // namespace
}  // namespace bm::engine::grammar
