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

// The image workload: the images' tokens come off the text, so the whole prompt is still exactly P.
TEST(PromptBuilderTest, ImageTokensAreReservedOutOfP) {
  PromptBuilder builder(fake_count, 3);
  builder.reserve_image_tokens(258, "1 image of 448x448");
  absl::StatusOr<std::string> text = builder.build(300);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*fake_count(*text) + 258, 300);
  EXPECT_TRUE(builder.build(270).ok());  // the template and the image alone
  EXPECT_TRUE(builder.check(270).ok());
  EXPECT_FALSE(builder.check(269).ok());
  EXPECT_THAT(std::string(builder.build(269).status().message()),
              ::testing::HasSubstr("a prompt of 269 tokens is shorter than the chat template (12 tokens) and 1 image "
                                   "of 448x448 (258 tokens) together"));
}

TEST(ChatRequestBodyTest, ImagesComeBeforeTheTextInOneUserMessage) {
  auto body =
      nlohmann::json::parse(chat_request_body("m", "hi", 8, {"data:image/png;base64,AA", "data:image/png;base64,BB"}));
  const auto& content = body["messages"][0]["content"];
  ASSERT_EQ(content.size(), 3u);
  EXPECT_EQ(content[0]["type"], "image_url");
  EXPECT_EQ(content[0]["image_url"]["url"], "data:image/png;base64,AA");
  EXPECT_EQ(content[1]["image_url"]["url"], "data:image/png;base64,BB");
  EXPECT_EQ(content[2]["type"], "text");
  EXPECT_EQ(content[2]["text"], "hi");
  EXPECT_EQ(body["max_completion_tokens"], 8);
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
