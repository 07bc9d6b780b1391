#include "common/constant_time.h"

#include <gtest/gtest.h>

#include <string>

namespace bm::common {
namespace {

TEST(ConstantTimeTest, EqualOnlyForTheSameBytes) {
  EXPECT_TRUE(constant_time_equals("Bearer abc", "Bearer abc"));
  EXPECT_TRUE(constant_time_equals("", ""));
  EXPECT_FALSE(constant_time_equals("Bearer abd", "Bearer abc"));
  EXPECT_FALSE(constant_time_equals("Bearer ab", "Bearer abc")) << "a prefix is not a match";
  EXPECT_FALSE(constant_time_equals("Bearer abcd", "Bearer abc")) << "an extension is not a match";
  EXPECT_FALSE(constant_time_equals("", "x"));
  EXPECT_FALSE(constant_time_equals("x", ""));
  // Cycling the expected value over a longer guess must not make a repetition match.
  EXPECT_FALSE(constant_time_equals("abcabc", "abc"));
  EXPECT_FALSE(constant_time_equals(std::string("a\0b", 3), std::string("a\0c", 3)));
}

}  // namespace
}  // namespace bm::common
