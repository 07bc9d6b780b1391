#include "engine/models/step_inputs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace bm::engine {
namespace {

using ::testing::ElementsAre;

TEST(StepInputsTest, LaysOutPositionsSlotsAndTables) {
  ForwardBatch batch;
  batch.token_ids = {10, 11, 12, 20};
  batch.sequences = {SequenceChunk{15, 3, {7, 2}, true}, SequenceChunk{4, 1, {5}, false}};
  absl::StatusOr<StepInputs> step = make_step_inputs(batch, StepLimits{100, 8, 1000});
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(step->num_tokens, 4);
  EXPECT_THAT(step->positions, ElementsAre(15, 16, 17, 4));
  // Position 15 is the last slot of block 7; 16 and 17 open block 2.
  EXPECT_THAT(step->slot_mapping, ElementsAre(7 * 16 + 15, 2 * 16 + 0, 2 * 16 + 1, 5 * 16 + 4));
  EXPECT_THAT(step->query_starts, ElementsAre(0, 3, 4));
  EXPECT_THAT(step->seq_lens, ElementsAre(18, 5));
  EXPECT_EQ(step->max_blocks_per_seq, 2);
  EXPECT_THAT(step->block_tables, ElementsAre(7, 2, 5, 0));
  EXPECT_THAT(step->logits_rows, ElementsAre(2));
  EXPECT_EQ(step->max_query_len, 3);
  EXPECT_EQ(step->max_seq_len, 18);
}

TEST(StepInputsTest, IgnoresBlockTableEntriesBeyondTheSequence) {
  ForwardBatch batch{{1}, {SequenceChunk{0, 1, {3, 99}, true}}};
  absl::StatusOr<StepInputs> step = make_step_inputs(batch, StepLimits{100, 8, 1000});
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_THAT(step->block_tables, ElementsAre(3));
}

}  // namespace
}  // namespace bm::engine
