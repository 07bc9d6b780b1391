#include "engine/runtime/block_manager.h"

#include <gtest/gtest.h>

#include "tests/unit/engine/runtime/sequence_factory.h"

namespace bm::engine {
namespace {

using testing::iota_tokens;
using testing::make_sequence;

TEST(BlockManager, ReserveGrowsTheTableAndFailsWithoutChangingIt) {
  BlockManager blocks(4, true);
  auto seq = make_sequence(1, iota_tokens(40));
  ASSERT_TRUE(blocks.reserve(*seq, 40));  // 3 blocks
  EXPECT_EQ(seq->block_table.size(), 3u);
  EXPECT_EQ(blocks.num_free_blocks(), 1);
  EXPECT_TRUE(blocks.reserve(*seq, 48));   // still 3
  EXPECT_FALSE(blocks.reserve(*seq, 80));  // 5 > 4
  EXPECT_EQ(seq->block_table.size(), 3u);
  EXPECT_EQ(blocks.num_free_blocks(), 1);
  blocks.release(*seq);
  EXPECT_EQ(blocks.num_free_blocks(), 4);
  EXPECT_TRUE(seq->block_table.empty());
}

TEST(BlockManager, FullComputedBlocksAreSharedByALaterSequence) {
  BlockManager blocks(8, true);
  auto first = make_sequence(1, iota_tokens(40));
  ASSERT_TRUE(blocks.reserve(*first, 40));
  first->num_computed_tokens = 40;
  blocks.cache_full_blocks(*first);
  EXPECT_EQ(first->block_hashes.size(), 2u);

  auto second = make_sequence(2, iota_tokens(35));  // same first 32 tokens
  blocks.attach_cached_prefix(*second);
  EXPECT_EQ(second->num_computed_tokens, 32);
  EXPECT_EQ(second->num_cached_prompt_tokens, 32);
  ASSERT_EQ(second->block_table.size(), 2u);
  EXPECT_EQ(second->block_table[0], first->block_table[0]);
  EXPECT_EQ(second->block_table[1], first->block_table[1]);
  EXPECT_EQ(blocks.num_used_blocks(), 3);  // shared, not copied
}

TEST(BlockManager, AWholeBlockAlignedPromptStillComputesItsLastBlock) {
  BlockManager blocks(8, true);
  auto first = make_sequence(1, iota_tokens(32));
  ASSERT_TRUE(blocks.reserve(*first, 32));
  first->num_computed_tokens = 32;
  blocks.cache_full_blocks(*first);
  auto again = make_sequence(2, iota_tokens(32));
  blocks.attach_cached_prefix(*again);
  EXPECT_EQ(again->num_computed_tokens, 16);  // the last token's logits need its block recomputed
}

TEST(BlockManager, DifferentPrefixesDoNotHit) {
  BlockManager blocks(8, true);
  auto first = make_sequence(1, iota_tokens(40));
  ASSERT_TRUE(blocks.reserve(*first, 40));
  first->num_computed_tokens = 40;
  blocks.cache_full_blocks(*first);
  auto other = make_sequence(2, iota_tokens(40, 1));
  blocks.attach_cached_prefix(*other);
  EXPECT_EQ(other->num_computed_tokens, 0);
  // Same second block but a different first one: the chained hash differs, so no hit either.
  std::vector<int32_t> tokens = iota_tokens(40);
  tokens[0] = 99;
  auto shifted = make_sequence(3, tokens);
  blocks.attach_cached_prefix(*shifted);
  EXPECT_EQ(shifted->num_computed_tokens, 0);
}

TEST(BlockManager, ReleasedCachedBlocksStayFindableUntilReused) {
  BlockManager blocks(3, true);
  auto first = make_sequence(1, iota_tokens(33));
  ASSERT_TRUE(blocks.reserve(*first, 33));
  first->num_computed_tokens = 33;
  blocks.cache_full_blocks(*first);
  blocks.release(*first);
  EXPECT_EQ(blocks.num_free_blocks(), 3);
  auto again = make_sequence(2, iota_tokens(33));
  blocks.attach_cached_prefix(*again);
  EXPECT_EQ(again->num_computed_tokens, 32);
  blocks.release(*again);
  // Filling the cache with other content evicts the cached blocks.
  auto filler = make_sequence(3, iota_tokens(48, 1000));
  ASSERT_TRUE(blocks.reserve(*filler, 48));
  blocks.release(*filler);
  auto late = make_sequence(4, iota_tokens(33));
  blocks.attach_cached_prefix(*late);
  EXPECT_EQ(late->num_computed_tokens, 0);
}

TEST(BlockManager, PrefixCachingCanBeOff) {
  BlockManager blocks(8, false);
  auto first = make_sequence(1, iota_tokens(40));
  ASSERT_TRUE(blocks.reserve(*first, 40));
  first->num_computed_tokens = 40;
  blocks.cache_full_blocks(*first);
  auto second = make_sequence(2, iota_tokens(40));
  blocks.attach_cached_prefix(*second);
  EXPECT_EQ(second->num_computed_tokens, 0);
}

}  // namespace
}  // namespace bm::engine
