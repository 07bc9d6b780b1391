#include "engine/grammar/token_vocabulary.h"

#include <map>

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

}  // namespace
}  // namespace bm::engine::grammar
