// The CPU kernels' vector helpers against the standard library: exp8 (the attention softmax's exponential).
// Here they are called outside a kernel clone, where GCC notes (-Wpsabi) that a 32-byte vector's return ABI
// differs with AVX; nothing here crosses a library boundary.
#pragma GCC diagnostic ignored "-Wpsabi"
#include "engine/backend/cpu/simd.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>

namespace bm::engine::cpu {
namespace {

// Distance in units in the last place between two positive finite floats.
int64_t ulps(float a, float b) {
  return std::abs(static_cast<int64_t>(std::bit_cast<int32_t>(a)) - static_cast<int64_t>(std::bit_cast<int32_t>(b)));
}

// Every 97th float in [-87.3, 0] (the softmax's range: score minus the running maximum) and a stretch above 0:
// within 2 ulp of the correctly rounded e^x (std::exp on double, rounded once).
TEST(Exp8Test, WithinTwoUlpOfTheCorrectlyRoundedValue) {
  int64_t worst = 0;
  float worst_x = 0;
  int64_t checked = 0;
  auto check = [&](float x) {
    const F32x8 got = exp8(F32x8{} + x);
    const float want = static_cast<float>(std::exp(static_cast<double>(x)));
    for (int lane = 0; lane < kLanes; ++lane) {
      const int64_t d = ulps(got[lane], want);
      if (d > worst) worst = d, worst_x = x;
    }
    ++checked;
  };
  for (uint32_t bits = std::bit_cast<uint32_t>(-0.0f); bits <= std::bit_cast<uint32_t>(-87.3f); bits += 97) {
    check(std::bit_cast<float>(bits));
  }
  for (float x = 0; x < 88.0f; x += 0.0137f) check(x);
  EXPECT_GT(checked, 10'000'000 / 97);
  EXPECT_LE(worst, 2) << "at x = " << worst_x;
}

TEST(Exp8Test, UnderflowAndTheLanesAreIndependent) {
  const float inf = std::numeric_limits<float>::infinity();
  const F32x8 x = {-inf, -1000.0f, -87.4f, 0.0f, 1.0f, -1.0f, -0.5f, 0.25f};
  const F32x8 got = exp8(x);
  EXPECT_EQ(got[0], 0.0f);
  EXPECT_EQ(got[1], 0.0f);
  EXPECT_EQ(got[2], 0.0f);
  EXPECT_EQ(got[3], 1.0f);
  for (int lane = 4; lane < kLanes; ++lane) {
    EXPECT_LE(ulps(got[lane], static_cast<float>(std::exp(static_cast<double>(x[lane])))), 2) << lane;
  }
}

}  // namespace
}  // namespace bm::engine::cpu
