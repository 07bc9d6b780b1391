#include "engine/runtime/scheduler.h"

#include <gtest/gtest.h>

#include "tests/unit/engine/runtime/sequence_factory.h"

namespace bm::engine {
namespace {

using testing::iota_tokens;
using testing::make_sequence;

// Plays the engine's part after a step: tokens computed, and a new token for every chunk that sampled.
void complete(Scheduler& scheduler, const ScheduledBatch& batch) {
  scheduler.mark_computed(batch);
  for (const ScheduledChunk& c : batch.chunks)
    if (c.wants_logits) c.seq->append_token(7);
}

TEST(Scheduler, ChunksAPrefillUnderTheTokenBudget) {
  BlockManager blocks(16, true);
  Scheduler scheduler({4, 16}, blocks);
  scheduler.add(make_sequence(1, iota_tokens(40)));
  ScheduledBatch b1 = scheduler.schedule();
  ASSERT_EQ(b1.chunks.size(), 1u);
  EXPECT_EQ(b1.chunks[0].num_new_tokens, 16);
  EXPECT_FALSE(b1.chunks[0].wants_logits);
  complete(scheduler, b1);
  ScheduledBatch b2 = scheduler.schedule();
  EXPECT_EQ(b2.chunks[0].num_new_tokens, 16);
  complete(scheduler, b2);
  ScheduledBatch b3 = scheduler.schedule();
  EXPECT_EQ(b3.chunks[0].num_new_tokens, 8);
  EXPECT_TRUE(b3.chunks[0].wants_logits);
  complete(scheduler, b3);
  ScheduledBatch decode = scheduler.schedule();
  EXPECT_EQ(decode.chunks[0].num_new_tokens, 1);
  EXPECT_TRUE(decode.chunks[0].wants_logits);
}

TEST(Scheduler, RunningDecodesComeBeforeNewPrefillsAndRespectMaxNumSeqs) {
  BlockManager blocks(32, true);
  Scheduler scheduler({2, 64}, blocks);
  scheduler.add(make_sequence(1, iota_tokens(10)));
  complete(scheduler, scheduler.schedule());
  scheduler.add(make_sequence(2, iota_tokens(10, 100)));
  scheduler.add(make_sequence(3, iota_tokens(10, 200)));
  ScheduledBatch b = scheduler.schedule();
  ASSERT_EQ(b.chunks.size(), 2u);  // max_num_seqs = 2
  EXPECT_EQ(b.chunks[0].seq->id(), 1);
  EXPECT_EQ(b.chunks[0].num_new_tokens, 1);
  EXPECT_EQ(b.chunks[1].seq->id(), 2);
  EXPECT_EQ(b.num_tokens, 11);
  EXPECT_EQ(scheduler.num_waiting(), 1);
}

TEST(Scheduler, PreemptsTheNewestWhenBlocksRunOutAndRecomputesIt) {
  BlockManager blocks(3, true);
  Scheduler scheduler({4, 64}, blocks);
  scheduler.add(make_sequence(1, iota_tokens(16)));       // 1 block, needs a 2nd after its first token
  scheduler.add(make_sequence(2, iota_tokens(31, 100)));  // 2 blocks
  ScheduledBatch b1 = scheduler.schedule();
  ASSERT_EQ(b1.chunks.size(), 2u);
  complete(scheduler, b1);  // seq 2 now has 32 tokens (full), seq 1 17 tokens
  ScheduledBatch b2 = scheduler.schedule();
  // Seq 1 needs a second block; none is free, so seq 2 (the newest) is preempted.
  ASSERT_EQ(b2.chunks.size(), 1u);
  EXPECT_EQ(b2.chunks[0].seq->id(), 1);
  EXPECT_EQ(scheduler.num_preemptions(), 1);
  EXPECT_EQ(scheduler.num_waiting(), 1);
  Sequence* preempted = scheduler.sequences().back();
  EXPECT_EQ(preempted->id(), 2);
  EXPECT_EQ(preempted->num_computed_tokens, 0);
  EXPECT_EQ(preempted->num_tokens(), 32);  // keeps its sampled token; all of it is recomputed
  complete(scheduler, b2);
  scheduler.remove(b2.chunks[0].seq);
  ScheduledBatch b3 = scheduler.schedule();
  ASSERT_EQ(b3.chunks.size(), 1u);
  EXPECT_EQ(b3.chunks[0].seq->id(), 2);
  EXPECT_TRUE(b3.chunks[0].wants_logits);
  // Its first block is still cached from before the preemption.
  EXPECT_EQ(b3.chunks[0].num_new_tokens, 16);
}

TEST(Scheduler, ALoneSequencePreemptsItselfOnlyWhenNothingElseIsLeft) {
  BlockManager blocks(1, true);
  Scheduler scheduler({4, 64}, blocks);
  scheduler.add(make_sequence(1, iota_tokens(16)));
  complete(scheduler, scheduler.schedule());
  ScheduledBatch b = scheduler.schedule();  // needs block 2 of a 1-block cache
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(scheduler.num_waiting(), 1);
}

TEST(Scheduler, SiblingsWaitForTheLeaderPrefillThenShareItsBlocks) {
  BlockManager blocks(16, true);
  Scheduler scheduler({8, 64}, blocks);
  auto request = std::make_shared<Request>();
  request->id = 1;
  scheduler.add(std::make_unique<Sequence>(1, 0, request, iota_tokens(40), 1));
  auto sibling = std::make_unique<Sequence>(2, 1, request, iota_tokens(40), 2);
  sibling->prefill_leader_id = 1;
  scheduler.add(std::move(sibling));
  ScheduledBatch b1 = scheduler.schedule();
  ASSERT_EQ(b1.chunks.size(), 1u);
  complete(scheduler, b1);
  ScheduledBatch b2 = scheduler.schedule();
  ASSERT_EQ(b2.chunks.size(), 2u);
  EXPECT_EQ(b2.chunks[1].seq->num_cached_prompt_tokens, 32);
  EXPECT_EQ(b2.chunks[1].num_new_tokens, 8);
  EXPECT_EQ(b2.chunks[1].seq->block_table[0], b2.chunks[0].seq->block_table[0]);
}

}  // namespace
}  // namespace bm::engine
