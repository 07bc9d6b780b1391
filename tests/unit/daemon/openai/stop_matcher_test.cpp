#include "daemon/openai/stop_matcher.h"

#include <gtest/gtest.h>

namespace bm::daemon::openai {
namespace {

TEST(StopMatcherTest, StopsBeforeStopString) {
  StopMatcher m({"END", "\n\n"});
  std::string out;
  bool stopped = false;
  for (std::string_view piece : {"Hello wo", "rld E", "N", "D more"}) {
    StopMatcher::Result r = m.push(piece);
    out += r.text;
    stopped |= r.stopped;
    if (stopped) break;
  }
  EXPECT_TRUE(stopped);
  EXPECT_EQ(out, "Hello world ");
  EXPECT_EQ(m.finish(), "");
}

TEST(StopMatcherTest, HeldBackTextIsReleasedWhenItCannotMatch) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("abcST").text, "abc");
  EXPECT_EQ(m.push("x").text, "STx");
  EXPECT_EQ(m.push("ST").text, "");
  EXPECT_EQ(m.finish(), "ST");
}

TEST(StopMatcherTest, EarliestStopWins) {
  StopMatcher m({"bc", "a"});
  StopMatcher::Result r = m.push("xxabc");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "xx");
}

TEST(StopMatcherTest, NoStopsPassesEverything) {
  StopMatcher m({});
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.push("anything").text, "anything");
}

}  // namespace
}  // namespace bm::daemon::openai
