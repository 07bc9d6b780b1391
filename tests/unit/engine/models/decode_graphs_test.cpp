// Decode-graph bookkeeping: which steps run as recorded graphs, at which padded shape, with which padded inputs.
#include "engine/models/decode_graphs.h"

#include <gtest/gtest.h>

namespace bm::engine {
namespace {

// A decode step of sequences with the given lengths (after this step), blocks numbered 10, 11, … per sequence.
StepInputs decode_step(const std::vector<int32_t>& lengths) {
  StepInputs step;
  step.num_seqs = static_cast<int32_t>(lengths.size());
  step.num_tokens = step.num_seqs;
  step.max_query_len = 1;
  for (int32_t len : lengths) {
    step.max_seq_len = std::max(step.max_seq_len, len);
    step.max_blocks_per_seq = std::max(step.max_blocks_per_seq, (len + kBlockSize - 1) / kBlockSize);
  }
  step.query_starts.push_back(0);
  int32_t block = 10;
  std::vector<std::vector<int32_t>> tables;
  for (size_t s = 0; s < lengths.size(); ++s) {
    std::vector<int32_t> table;
    for (int32_t b = 0; b < (lengths[s] + kBlockSize - 1) / kBlockSize; ++b) table.push_back(block++);
    step.positions.push_back(lengths[s] - 1);
    step.slot_mapping.push_back(table.back() * kBlockSize + (lengths[s] - 1) % kBlockSize);
    step.seq_lens.push_back(lengths[s]);
    step.query_starts.push_back(static_cast<int32_t>(s) + 1);
    step.logits_rows.push_back(static_cast<int32_t>(s));
    table.resize(static_cast<size_t>(step.max_blocks_per_seq), 0);
    tables.push_back(table);
  }
  for (auto& t : tables) {
    t.resize(static_cast<size_t>(step.max_blocks_per_seq), 0);
    step.block_tables.insert(step.block_tables.end(), t.begin(), t.end());
  }
  return step;
}

TEST(DecodeGraphs, BatchSizesArePowersOfTwoThenMultiplesOfEight) {
  EXPECT_EQ(DecodeGraphs(256, 32768).batch_sizes().size(), 3u + 32u);  // 1, 2, 4, 8, 16, …, 256
  EXPECT_EQ(DecodeGraphs(20, 32768).batch_sizes(), (std::vector<int32_t>{1, 2, 4, 8, 16, 20}));
  EXPECT_EQ(DecodeGraphs(4, 32768).batch_sizes(), (std::vector<int32_t>{1, 2, 4}));
  EXPECT_EQ(DecodeGraphs(1, 32768).batch_sizes(), (std::vector<int32_t>{1}));
}

TEST(DecodeGraphs, ContextBoundsGrowFourfoldUpToTheModelsContext) {
  EXPECT_EQ(DecodeGraphs(8, 32768).context_bounds(), (std::vector<int32_t>{1024, 4096, 16384, 32768}));
  EXPECT_EQ(DecodeGraphs(8, 131072).context_bounds(), (std::vector<int32_t>{1024, 4096, 16384, 65536, 131072}));
  EXPECT_EQ(DecodeGraphs(8, 1000).context_bounds(), (std::vector<int32_t>{1008}));  // whole blocks
  EXPECT_EQ(DecodeGraphs(8, 1000).max_blocks_per_seq(), 63);
}

TEST(DecodeGraphs, DecodeStepsGetTheNextShapeUp) {
  const DecodeGraphs graphs(256, 32768);
  EXPECT_EQ(graphs.shape_for(decode_step({5})), (DecodeGraphShape{1, 1024}));
  EXPECT_EQ(graphs.shape_for(decode_step({5, 900, 17})), (DecodeGraphShape{4, 1024}));
  EXPECT_EQ(graphs.shape_for(decode_step(std::vector<int32_t>(9, 1025))), (DecodeGraphShape{16, 4096}));
  EXPECT_EQ(graphs.shape_for(decode_step(std::vector<int32_t>(256, 32768))), (DecodeGraphShape{256, 32768}));
}

TEST(DecodeGraphs, OtherStepsRunUncaptured) {
  const DecodeGraphs graphs(8, 32768);
  StepInputs prefill = decode_step({5, 7});
  prefill.num_tokens = 9;  // a chunk of several tokens
  EXPECT_FALSE(graphs.shape_for(prefill).has_value());
  StepInputs silent = decode_step({5, 7});
  silent.logits_rows.pop_back();  // one sequence does not sample this step
  EXPECT_FALSE(graphs.shape_for(silent).has_value());
  EXPECT_FALSE(graphs.shape_for(decode_step(std::vector<int32_t>(9, 5))).has_value());  // more than max_seqs
  DecodeGraphs off(8, 32768);
  off.disable("the capture failed");
  EXPECT_FALSE(off.shape_for(decode_step({5})).has_value());
  EXPECT_EQ(off.stats().disabled, "the capture failed");
}

TEST(DecodeGraphs, PaddingRowsAttendToOnePositionAndStoreNothing) {
  const StepInputs step = decode_step({20, 3});  // 2 and 1 blocks: tables [10, 11] and [12, 0]
  const PaddedDecodeInputs in = DecodeGraphs::pad(step, {7, 8}, DecodeGraphShape{4, 64});
  EXPECT_EQ(in.token_ids, (std::vector<int32_t>{7, 8, 0, 0}));
  EXPECT_EQ(in.positions, (std::vector<int32_t>{19, 2, 0, 0}));
  EXPECT_EQ(in.slot_mapping, (std::vector<int32_t>{11 * 16 + 3, 12 * 16 + 2, -1, -1}));
  EXPECT_EQ(in.seq_lens, (std::vector<int32_t>{20, 3, 1, 1}));
  EXPECT_EQ(in.query_starts, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(in.logits_rows, (std::vector<int32_t>{0, 1, 2, 3}));
  // 4 rows of 64 / 16 = 4 blocks each.
  EXPECT_EQ(in.block_tables, (std::vector<int32_t>{10, 11, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
}

struct FakeGraph : StepGraph {
  int64_t num_nodes() const override { return 0; }
};

TEST(DecodeGraphs, KeepsOneGraphPerShapeUntilCleared) {
  DecodeGraphs graphs(8, 4096);
  const DecodeGraphShape a{2, 1024}, b{4, 1024};
  EXPECT_EQ(graphs.find(a), nullptr);
  graphs.add(a, std::make_unique<FakeGraph>());
  graphs.add(b, std::make_unique<FakeGraph>());
  EXPECT_NE(graphs.find(a), nullptr);
  EXPECT_NE(graphs.find(a), graphs.find(b));
  EXPECT_EQ(graphs.stats().captured, 2);
  graphs.clear();
  EXPECT_EQ(graphs.find(a), nullptr);
  EXPECT_TRUE(graphs.stats().disabled.empty());
}

}  // namespace
}  // namespace bm::engine
