// `chat benchmark --image-size WIDTHxHEIGHT`: the form is checked in the CLI (the range in the daemon).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/bench_commands.h"

namespace bm::cli {
namespace {

TEST(BenchImageSize, ParsesWidthByHeight) {
  absl::StatusOr<ImageSize> s = parse_image_size("448x336");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->width, 448);
  EXPECT_EQ(s->height, 336);
  s = parse_image_size(kDefaultImageSize);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->width, 448);
  EXPECT_EQ(s->height, 448);
  EXPECT_TRUE(parse_image_size("28X28").ok());
}

TEST(BenchImageSize, AnythingElseIsOneSentence) {
  for (const char* bad : {"448", "448x", "x448", "448x448x3", "-1x448", "0x448", "448 x 448", "axb", ""}) {
    absl::StatusOr<ImageSize> s = parse_image_size(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(std::string(s.status().message()),
              std::string("--image-size takes WIDTHxHEIGHT in pixels (e.g. 448x448), not '") + bad + "'");
  }
}

}  // namespace
}  // namespace bm::cli
