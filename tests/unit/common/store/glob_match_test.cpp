#include "common/store/glob_match.h"

#include <gtest/gtest.h>

namespace bm::common {
namespace {

TEST(GlobMatch, FollowsPythonFnmatchcase) {
  EXPECT_TRUE(glob_match("qwen2.5-7b-*", "qwen2.5-7b-awq"));
  EXPECT_FALSE(glob_match("qwen2.5-7b-*", "qwen2.5-72b-awq"));
  EXPECT_TRUE(glob_match("*", "anything"));
  EXPECT_TRUE(glob_match("qwen?.5-*", "qwen2.5-0.5b-origin"));
  EXPECT_TRUE(glob_match("*-gptq[48]", "qwq-32b-gptq4"));
  EXPECT_FALSE(glob_match("*-gptq[!48]", "qwq-32b-gptq4"));
  EXPECT_TRUE(glob_match("a*c", "a/b/c"));           // `*` crosses `/`, as in fnmatch.py
  EXPECT_TRUE(glob_match("*x", ".x"));               // and leading dots
  EXPECT_FALSE(glob_match("QWQ-*", "qwq-32b-awq"));  // case matters on POSIX
  EXPECT_TRUE(glob_match("a\\b", "a\\b"));           // a backslash is an ordinary character
  EXPECT_FALSE(glob_match("qwen", "qwen2.5"));       // the whole name must match
}

}  // namespace
}  // namespace bm::common
