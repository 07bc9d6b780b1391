#include "daemon/openai/stop_matcher.h"

#include <random>

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
  StopMatcher m(std::vector<std::string>{});
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.push("anything").text, "anything");
}

}  // namespace
}  // namespace bm::daemon::openai

namespace bm::daemon::openai {
namespace {

// The rule the matcher must keep, written the obvious way: over everything seen so far, the stop string that
// starts first wins; emitted text is everything that can no longer become part of a stop string.
struct NaiveStops {
  std::vector<std::string> stops;
  std::string seen;
  size_t emitted = 0;
  bool stopped = false;
  StopMatcher::Result push(std::string_view text) {
    StopMatcher::Result out;
    if (stopped) return out;
    seen.append(text);
    size_t first = std::string::npos;
    for (const std::string& s : stops)
      if (!s.empty()) first = std::min(first, seen.find(s, emitted));
    if (first != std::string::npos) {
      out.text = seen.substr(emitted, first - emitted);
      out.stopped = stopped = true;
      return out;
    }
    size_t hold = 0;
    for (const std::string& s : stops)
      for (size_t n = std::min(seen.size() - emitted, s.empty() ? 0 : s.size() - 1); n > hold; --n)
        if (seen.compare(seen.size() - n, n, s, 0, n) == 0) {
          hold = n;
          break;
        }
    out.text = seen.substr(emitted, seen.size() - hold - emitted);
    emitted = seen.size() - hold;
    return out;
  }
};

TEST(StopMatcherTest, AgreesWithTheNaiveRuleOnRandomStreams) {
  std::mt19937 rng(42);
  auto random_text = [&](size_t max_len) {
    std::string s(rng() % (max_len + 1), ' ');
    for (char& c : s) c = "abc"[rng() % 3];
    return s;
  };
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::string> stops;
    for (int i = 0, n = 1 + rng() % 4; i < n; ++i) stops.push_back(random_text(5));
    StopMatcher fast(stops);
    NaiveStops naive{stops};
    std::string fast_out, naive_out;
    for (int piece = 0; piece < 12; ++piece) {
      std::string text = random_text(4);
      StopMatcher::Result a = fast.push(text);
      StopMatcher::Result b = naive.push(text);
      ASSERT_EQ(a.text, b.text) << "trial " << trial << " piece " << piece;
      ASSERT_EQ(a.stopped, b.stopped) << "trial " << trial;
      fast_out += a.text;
      naive_out += b.text;
      if (a.stopped) break;
    }
    if (!naive.stopped) EXPECT_EQ(fast.finish(), naive.seen.substr(naive.emitted));
  }
}

TEST(StopMatcherTest, LongStopStringsCostOnlyTheNewBytes) {
  // 16 stop strings of 1024 bytes that the text keeps almost matching: the old matcher compared every held-back
  // suffix with every stop string on each token (~16M byte comparisons per token, far past ctest's timeout for
  // 20k tokens); the automaton does a few steps per byte.
  std::vector<std::string> stops;
  for (int i = 0; i < 16; ++i) stops.push_back(std::string(1023, 'a') + static_cast<char>('b' + i));
  StopMatcher m(stops);
  size_t emitted = 0;
  for (int token = 0; token < 20000; ++token) {
    StopMatcher::Result r = m.push("a");
    ASSERT_FALSE(r.stopped);
    emitted += r.text.size();
  }
  EXPECT_EQ(emitted, 20000u - 1023u);  // the last 1023 bytes may still begin a stop string
  StopMatcher::Result r = m.push("c");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, std::string(0, 'a'));
}

TEST(StopMatcherTest, ChoicesShareOneCompiledStopList) {
  auto stops = std::make_shared<const StopStrings>(std::vector<std::string>{"END", "", "\n\n"});
  EXPECT_EQ(stops->strings().size(), 2u);  // the empty string can never match and is dropped
  StopMatcher a(stops), b(stops);
  EXPECT_EQ(a.push("xEN").text, "x");
  EXPECT_EQ(b.push("yy\n").text, "yy");
  EXPECT_TRUE(a.push("D").stopped);
  EXPECT_FALSE(b.push("z").stopped);
  EXPECT_EQ(stops.use_count(), 3);
}

}  // namespace
}  // namespace bm::daemon::openai
