#include "daemon/bench/sweep.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace bm::daemon::bench {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(SweepTest, LevelsArePowersOfTwoBelowTheMaxThenTheMax) {
  EXPECT_THAT(concurrency_levels(9), ElementsAre(1, 2, 4, 8, 9));
  EXPECT_THAT(concurrency_levels(8), ElementsAre(1, 2, 4, 8));
  EXPECT_THAT(concurrency_levels(1), ElementsAre(1));
  EXPECT_THAT(concurrency_levels(3), ElementsAre(1, 2, 3));
  EXPECT_TRUE(concurrency_levels(0).empty());
  EXPECT_EQ(concurrency_levels(256).size(), 9u);
}

TEST(SweepTest, MaxConcurrencyIsKvTokensOverRequestLengthCappedAt256AndMaxNumSeqs) {
  EXPECT_EQ(max_concurrency(9000, {500, 500}, 256), 9);
  EXPECT_EQ(max_concurrency(999, {500, 500}, 256), 0);
  EXPECT_EQ(max_concurrency(10'000'000, {500, 500}, 1024), 256);
  EXPECT_EQ(max_concurrency(10'000'000, {500, 500}, 32), 32);
  EXPECT_EQ(max_concurrency(0, {1, 1}, 256), 0);
}

TEST(SweepTest, PairsAreTheCartesianProductInOrder) {
  auto pairs = make_token_pairs({128, 1024}, {64, 32}, 4096);
  ASSERT_TRUE(pairs.ok());
  ASSERT_EQ(pairs->size(), 4u);
  EXPECT_EQ((*pairs)[1].prompt_tokens, 128);
  EXPECT_EQ((*pairs)[1].completion_tokens, 32);
  EXPECT_EQ((*pairs)[2].prompt_tokens, 1024);
}

TEST(SweepTest, BadListsAreOneSentenceEach) {
  EXPECT_THAT(std::string(make_token_pairs({}, {1}, 0).status().message()), HasSubstr("prompt tokens is empty"));
  EXPECT_THAT(std::string(make_token_pairs({5}, {}, 0).status().message()), HasSubstr("completion tokens is empty"));
  EXPECT_THAT(std::string(make_token_pairs({-3}, {1}, 0).status().message()), HasSubstr("at least 1, not -3"));
  auto too_long = make_token_pairs({3000}, {2000}, 4096);
  EXPECT_THAT(std::string(too_long.status().message()),
              HasSubstr("prompt 3000 + completion 2000 = 5000 tokens is over the model's context of 4096 tokens"));
  EXPECT_TRUE(make_token_pairs({3000}, {2000}, 0).ok());  // unknown context: no check
}

}  // namespace
}  // namespace bm::daemon::bench
