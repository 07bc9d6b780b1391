#include "engine/vision/smart_resize.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/engine/vision/vision_fixtures.h"

namespace bm::engine::vision {
namespace {

using ::testing::HasSubstr;

// The generator evaluated transformers' smart_resize over ~1300 (height, width, min, max) rows, covering both
// branches, Python's ties-to-even rounding (h / 28 = k + 0.5) and the aspect-ratio error (-1).
TEST(SmartResizeTest, MatchesTransformersOnTheRecordedTable) {
  const auto& rows = testing::expected()["smart_resize"];
  ASSERT_GT(rows.size(), 1000u);
  int errors = 0;
  for (const auto& r : rows) {
    const int64_t h = r[0], w = r[1], lo = r[2], hi = r[3], eh = r[4], ew = r[5];
    auto size = smart_resize(h, w, 28, static_cast<double>(lo), static_cast<double>(hi));
    if (eh < 0) {
      EXPECT_FALSE(size.ok()) << h << "x" << w;
      ++errors;
      continue;
    }
    ASSERT_TRUE(size.ok()) << h << "x" << w << ": " << size.status();
    EXPECT_EQ(size->height, eh) << h << "x" << w << " in [" << lo << ", " << hi << "]";
    EXPECT_EQ(size->width, ew) << h << "x" << w << " in [" << lo << ", " << hi << "]";
  }
  EXPECT_GT(errors, 0);
}

TEST(SmartResizeTest, RoundsTiesToEvenLikePython) {
  // 42 / 28 = 1.5 -> 2, 70 / 28 = 2.5 -> 2 (not 3), 98 / 28 = 3.5 -> 4.
  EXPECT_EQ(*smart_resize(42, 98, 28, 1, 1e9), (ImageSize{56, 112}));
  EXPECT_EQ(*smart_resize(70, 70, 28, 1, 1e9), (ImageSize{56, 56}));
}

TEST(SmartResizeTest, TheTwoUpstreamRulesDifferOnlyAtTheEdges) {
  // qwen-vl-utils clamps a side to one factor before the area check; transformers after shrinking.
  EXPECT_EQ(*smart_resize(10, 1000, 28, 100, 1e9, SmartResizeRule::kQwenVlUtils), (ImageSize{28, 1008}));
  // transformers: 10 / 28 rounds to 0, the area 0 is under min_pixels, and the upscale by sqrt(100 / 10000)
  // shrinks the long side instead.
  EXPECT_EQ(*smart_resize(10, 1000, 28, 100, 1e9, SmartResizeRule::kTransformers), (ImageSize{28, 112}));
  EXPECT_EQ(*smart_resize(10, 20, 28, 100, 1e9, SmartResizeRule::kQwenVlUtils), (ImageSize{28, 28}));
  EXPECT_EQ(*smart_resize(10, 20, 28, 100, 1e9, SmartResizeRule::kTransformers), (ImageSize{28, 28}));
  EXPECT_EQ(*smart_resize(1000, 1000, 28, 100, 784, SmartResizeRule::kTransformers), (ImageSize{28, 28}));
}

TEST(SmartResizeTest, RefusesExtremeAspectRatiosAndEmptySizes) {
  EXPECT_THAT(smart_resize(1, 201, 28, 3136, 1e7).status().message(), HasSubstr("aspect ratio"));
  EXPECT_TRUE(smart_resize(1, 200, 28, 3136, 1e7).ok());
  EXPECT_FALSE(smart_resize(0, 10, 28, 3136, 1e7).ok());
  EXPECT_FALSE(smart_resize(10, 10, 28, 0, 1e7).ok());
  EXPECT_THAT(smart_resize(int64_t{1} << 40, int64_t{1} << 40, 28, 3136, 1e7).status().message(),
              HasSubstr("too large"));
}

}  // namespace
}  // namespace bm::engine::vision
