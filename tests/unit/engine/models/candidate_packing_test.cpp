#include "engine/models/candidate_packing.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

namespace bm::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

// A request over 3 rows with every optional part present: 2 listed ids, sums, top-p, 2 masks of 2 words.
CandidateRequest full_request() {
  CandidateRequest r;
  r.k = 2;
  r.listed_starts = {0, 1, 1, 2};
  r.listed_ids = {40, 7};
  r.log_sum_exp = true;
  r.inverse_temperatures = {1.0f, 0.5f, 2.0f};
  r.mask_rows = {-1, 1, 0};
  r.masks = {0x1u, 0x2u, 0xffffffffu, 0x80000000u};
  return r;
}

// Regions follow each other without gaps or overlaps, in the documented order, and end at the total.
void expect_contiguous(std::initializer_list<CandidatePacking::Region> regions, int64_t total) {
  int64_t next = 0;
  for (const CandidatePacking::Region& r : regions) {
    EXPECT_EQ(r.offset, next);
    EXPECT_GE(r.size, 0);
    next = r.offset + r.size;
  }
  EXPECT_EQ(next, total);
}

TEST(CandidatePackingTest, LaysOutEveryPartOnceInOrder) {
  const CandidatePacking p = CandidatePacking::of(full_request(), 3, 2);
  EXPECT_EQ(p.listed_starts.size, 4);
  EXPECT_EQ(p.listed_ids.size, 2);
  EXPECT_EQ(p.inverse_temperatures.size, 3);
  EXPECT_EQ(p.mask_rows.size, 3);
  EXPECT_EQ(p.masks.size, 4);
  expect_contiguous({p.listed_starts, p.listed_ids, p.inverse_temperatures, p.mask_rows, p.masks}, p.input_words);
  EXPECT_EQ(p.input_words, 16);
  EXPECT_EQ(p.ids.size, 6);
  EXPECT_EQ(p.logits.size, 6);
  EXPECT_EQ(p.log_sum_exp.size, 3);
  EXPECT_EQ(p.tempered_lse.size, 3);
  EXPECT_EQ(p.listed_logits.size, 2);
  expect_contiguous({p.ids, p.logits, p.log_sum_exp, p.tempered_lse, p.listed_logits}, p.output_words);
  EXPECT_EQ(p.output_words, 20);
}

// A plain greedy step (nothing listed, no sums, no masks) uploads only the offsets and reads back ids and logits.
TEST(CandidatePackingTest, OptionalPartsTakeNoWords) {
  CandidateRequest r;
  r.k = 1;
  r.listed_starts = {0, 0};
  const CandidatePacking p = CandidatePacking::of(r, 1, 4);
  EXPECT_EQ(p.input_words, 2);
  EXPECT_EQ(p.output_words, 2);
  for (const CandidatePacking::Region& empty :
       {p.listed_ids, p.inverse_temperatures, p.mask_rows, p.masks, p.log_sum_exp, p.tempered_lse, p.listed_logits})
    EXPECT_EQ(empty.size, 0);
  std::vector<uint32_t> words;
  p.pack_inputs(r, words);
  EXPECT_THAT(words, ElementsAre(0u, 0u));
}

TEST(CandidatePackingTest, PacksEachInputAtItsOffset) {
  const CandidateRequest r = full_request();
  const CandidatePacking p = CandidatePacking::of(r, 3, 2);
  std::vector<uint32_t> words(99, 0xdeadbeefu);  // stale contents of a reused buffer must not survive
  p.pack_inputs(r, words);
  ASSERT_EQ(static_cast<int64_t>(words.size()), p.input_words);
  auto at = [&](CandidatePacking::Region region) {
    return std::vector<uint32_t>(words.begin() + region.offset, words.begin() + region.offset + region.size);
  };
  EXPECT_THAT(at(p.listed_starts), ElementsAre(0u, 1u, 1u, 2u));
  EXPECT_THAT(at(p.listed_ids), ElementsAre(40u, 7u));
  EXPECT_THAT(at(p.inverse_temperatures), ElementsAre(std::bit_cast<uint32_t>(1.0f), std::bit_cast<uint32_t>(0.5f),
                                                      std::bit_cast<uint32_t>(2.0f)));
  EXPECT_THAT(at(p.mask_rows), ElementsAre(0xffffffffu, 1u, 0u));
  EXPECT_THAT(at(p.masks), ElementsAreArray(r.masks));
}

// The read-back words become the Candidates' vectors bit for bit: -inf, NaN and -1 ids included.
TEST(CandidatePackingTest, UnpacksEveryOutputBitForBit) {
  const CandidatePacking p = CandidatePacking::of(full_request(), 3, 2);
  std::vector<uint32_t> words(static_cast<size_t>(p.output_words));
  for (size_t i = 0; i < words.size(); ++i) words[i] = 1000u + static_cast<uint32_t>(i);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  words[static_cast<size_t>(p.ids.offset + 5)] = static_cast<uint32_t>(-1);
  words[static_cast<size_t>(p.logits.offset + 5)] = std::bit_cast<uint32_t>(neg_inf);
  words[static_cast<size_t>(p.listed_logits.offset + 1)] = std::bit_cast<uint32_t>(nan);
  Candidates out;
  p.unpack_outputs(words, out);
  EXPECT_EQ(out.k, 2);
  ASSERT_EQ(out.ids.size(), 6u);
  EXPECT_EQ(out.ids[0], 1000 + p.ids.offset);
  EXPECT_EQ(out.ids[5], -1);
  ASSERT_EQ(out.logits.size(), 6u);
  EXPECT_EQ(std::bit_cast<uint32_t>(out.logits[0]), 1000u + p.logits.offset);
  EXPECT_EQ(out.logits[5], neg_inf);
  ASSERT_EQ(out.log_sum_exp.size(), 3u);
  EXPECT_EQ(std::bit_cast<uint32_t>(out.log_sum_exp[2]), 1000u + p.log_sum_exp.offset + 2);
  ASSERT_EQ(out.tempered_lse.size(), 3u);
  EXPECT_EQ(std::bit_cast<uint32_t>(out.tempered_lse[0]), 1000u + p.tempered_lse.offset);
  ASSERT_EQ(out.listed_logits.size(), 2u);
  EXPECT_EQ(std::bit_cast<uint32_t>(out.listed_logits[0]), 1000u + p.listed_logits.offset);
  EXPECT_TRUE(std::isnan(out.listed_logits[1]));
}

// Without sums, top-p or listed ids those vectors come back empty, as DecoderLM returned them before packing.
TEST(CandidatePackingTest, UnpacksAbsentPartsAsEmpty) {
  CandidateRequest r;
  r.k = 3;
  r.listed_starts = {0, 0, 0};
  const CandidatePacking p = CandidatePacking::of(r, 2, 1);
  const std::vector<uint32_t> words(static_cast<size_t>(p.output_words), 0);
  Candidates out;
  out.log_sum_exp = {1.0f};  // a reused Candidates must not keep an earlier step's parts
  p.unpack_outputs(words, out);
  EXPECT_EQ(out.ids.size(), 6u);
  EXPECT_TRUE(out.log_sum_exp.empty());
  EXPECT_TRUE(out.tempered_lse.empty());
  EXPECT_TRUE(out.listed_logits.empty());
}

}  // namespace
}  // namespace bm::engine
