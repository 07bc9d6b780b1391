#include "cli/hub_argument.h"

#include <gtest/gtest.h>

namespace bm::cli {
namespace {

TEST(HubArgument, LeadingHfOrMsIsTheHubAsInTheOriginal) {
  std::vector<std::string> words = {"hf"};
  std::string hub;
  ASSERT_TRUE(take_hub_argument(words, hub, 0, 1, "u").ok());
  EXPECT_EQ(hub, "hf");
  EXPECT_TRUE(words.empty());  // `chat list hf`: every model, not a pattern "hf"

  words = {"ms", "qwen2.5-7b*"};
  hub.clear();
  ASSERT_TRUE(take_hub_argument(words, hub, 0, 1, "u").ok());
  EXPECT_EQ(hub, "ms");
  EXPECT_EQ(words, std::vector<std::string>{"qwen2.5-7b*"});

  words = {"qwen2.5-7b*"};
  hub = "ms";  // --hub alone still works
  ASSERT_TRUE(take_hub_argument(words, hub, 0, 1, "u").ok());
  EXPECT_EQ(hub, "ms");
  EXPECT_EQ(words, std::vector<std::string>{"qwen2.5-7b*"});

  words = {"hf", "x"};
  hub = "hf";  // the same hub twice is fine
  EXPECT_TRUE(take_hub_argument(words, hub, 1, 1, "u").ok());
}

TEST(HubArgument, ContradictionsAndMissingNamesAreOneSentenceAndChangeNothing) {
  std::vector<std::string> words = {"ms", "x"};
  std::string hub = "hf";
  EXPECT_EQ(take_hub_argument(words, hub, 1, 1, "u").message(),
            "the hub is given twice, as 'ms' and as --hub hf; give it once");
  EXPECT_EQ(hub, "hf");
  EXPECT_EQ(words.size(), 2u);

  words = {"hf"};
  hub.clear();
  EXPECT_EQ(take_hub_argument(words, hub, 1, 1, "bmserver chat serve [hf|ms] NAME").message(),
            "after the hub, name a model: bmserver chat serve [hf|ms] NAME");
  EXPECT_EQ(hub, "");

  words = {"a", "b"};
  EXPECT_EQ(take_hub_argument(words, hub, 1, 1, "usage").message(), "unexpected argument 'b': usage");
}

}  // namespace
}  // namespace bm::cli
