#include "common/size_format.h"

#include <gtest/gtest.h>

namespace bm::common {
namespace {

TEST(FormatSize, UsesDecimalUnitsWithOneDecimal) {
  EXPECT_EQ(format_size(0), "0.0");
  EXPECT_EQ(format_size(999), "999.0");
  EXPECT_EQ(format_size(1000), "1.0K");
  EXPECT_EQ(format_size(1500), "1.5K");
  EXPECT_EQ(format_size(15231233024ULL), "15.2G");
  EXPECT_EQ(format_size(1000ULL * 1000 * 1000 * 1000), "1.0T");
}

TEST(FormatSize, RoundsUpIntoTheNextUnit) {
  EXPECT_EQ(format_size(999960), "1.0M");
  EXPECT_EQ(format_size(999940), "999.9K");
}

}  // namespace
}  // namespace bm::common
