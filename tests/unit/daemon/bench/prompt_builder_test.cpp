#include "daemon/bench/prompt_builder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace bm::daemon::bench {
namespace {

// A stand-in tokenizer: 12 template tokens, then one token per character except that the pair "的一" merges
// into one token, so the builder has to correct its guesses.
absl::StatusOr<int32_t> fake_count(const std::string& text) {
  int32_t n = 12;
  for (size_t i = 0; i < text.size(); i += 3) {
    if (text.compare(i, 6, "的一") == 0) i += 3;
    ++n;
  }
  return n;
}

TEST(PromptBuilderTest, HitsTheExactCountAndVaries) {
  PromptBuilder builder(fake_count, 2025);
  std::set<std::string> seen;
  for (int32_t p : {12, 13, 50, 500, 777}) {
    absl::StatusOr<std::string> text = builder.build(p);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*fake_count(*text), p);
    seen.insert(*text);
  }
  EXPECT_EQ(seen.size(), 5u);
}

TEST(PromptBuilderTest, SameSeedSamePrompts) {
  PromptBuilder a(fake_count, 7), b(fake_count, 7);
  EXPECT_EQ(*a.build(100), *b.build(100));
}

TEST(PromptBuilderTest, PromptShorterThanTheTemplateIsRefused) {
  PromptBuilder builder(fake_count, 1);
  absl::StatusOr<std::string> text = builder.build(5);
  EXPECT_THAT(std::string(text.status().message()),
              ::testing::HasSubstr("shorter than the chat template alone (12 tokens)"));
}

TEST(PromptBuilderTest, CounterErrorsPassThrough) {
  PromptBuilder builder([](const std::string&) -> absl::StatusOr<int32_t> { return absl::UnavailableError("down"); },
                        1);
  EXPECT_EQ(builder.build(10).status().message(), "down");
}

TEST(ChatRequestBodyTest, AsksForExactlyCTokensStreamedWithUsage) {
  auto body = nlohmann::json::parse(chat_request_body("m", "hi", 64));
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_EQ(body["ignore_eos"], true);
  EXPECT_EQ(body["max_completion_tokens"], 64);
  EXPECT_EQ(body["messages"][0]["content"], "hi");
}

}  // namespace
}  // namespace bm::daemon::bench
