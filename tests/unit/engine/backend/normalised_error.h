#pragma once
// Agreement of a kernel's output with a double-precision reference: Σ(a-b)²/Σb² (Σ(a-b)² where the reference is
// all zeros). Shared by the CPU backend's kernel tests, which hold F32 kernels to kMaxNormalisedError.
#include <gtest/gtest.h>

#include <vector>

namespace bm::engine::kernel_check {

constexpr double kMaxNormalisedError = 1e-10;

inline double normalised_error(const std::vector<float>& actual, const std::vector<double>& expected) {
  EXPECT_EQ(actual.size(), expected.size());
  double error = 0, norm = 0;
  for (size_t i = 0; i < actual.size() && i < expected.size(); ++i) {
    error += (actual[i] - expected[i]) * (actual[i] - expected[i]);
    norm += expected[i] * expected[i];
  }
  return norm > 0 ? error / norm : error;
}

}  // namespace bm::engine::kernel_check
