// The CUDA plugin's device-error sink (engine/backend/cuda/cuda_check.h) without a GPU: the check macros record
// the first failure into the thread's current sink and return from the function instead of aborting.
#include "engine/backend/cuda/cuda_check.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>

namespace bm::engine::cuda {
namespace {

int reached = 0;

void fails_then_continues(cudaError_t first, cudaError_t second) {
  reached = 0;
  BM_CUDA_CHECK(first);
  reached = 1;
  BM_CUDA_CHECK(second);
  reached = 2;
}

TEST(CudaCheckTest, RecordsTheFirstFailureAndReturns) {
  DeviceErrors errors;
  {
    const ScopedDeviceErrors sink(&errors);
    fails_then_continues(cudaSuccess, cudaSuccess);
    EXPECT_EQ(reached, 2);
    EXPECT_FALSE(errors.failed());
    fails_then_continues(cudaSuccess, cudaErrorIllegalAddress);
    EXPECT_EQ(reached, 1);
    fails_then_continues(cudaErrorLaunchFailure, cudaSuccess);
    EXPECT_EQ(reached, 0);
  }
  ASSERT_TRUE(errors.failed());
  const std::string message = errors.message();
  EXPECT_NE(message.find("cudaErrorIllegalAddress"), std::string::npos) << message;
  EXPECT_NE(message.find("(second at cuda_check_test.cpp:"), std::string::npos) << message;
  EXPECT_NE(message.find("restart"), std::string::npos) << message;
  EXPECT_EQ(message.find("LaunchFailure"), std::string::npos) << "the first failure must stay: " << message;
}

TEST(CudaCheckTest, BooleanFormsAndCublas) {
  DeviceErrors errors;
  const ScopedDeviceErrors sink(&errors);
  EXPECT_TRUE(BM_CUDA_OK(cudaSuccess));
  EXPECT_TRUE(BM_CUBLAS_OK(CUBLAS_STATUS_SUCCESS));
  EXPECT_FALSE(errors.failed());
  EXPECT_FALSE(BM_CUBLAS_OK(CUBLAS_STATUS_EXECUTION_FAILED));
  EXPECT_NE(errors.message().find("CUBLAS_STATUS_EXECUTION_FAILED"), std::string::npos) << errors.message();
}

TEST(CudaCheckTest, SinksNestAndAreThreadLocal) {
  DeviceErrors outer, inner, other_thread;
  {
    const ScopedDeviceErrors a(&outer);
    {
      const ScopedDeviceErrors b(&inner);
      EXPECT_FALSE(BM_CUDA_OK(cudaErrorInvalidValue));
      std::thread([&] {
        // Another thread sees no sink of this one: without its own it only prints, never aborts.
        EXPECT_FALSE(BM_CUDA_OK(cudaErrorInvalidValue));
        const ScopedDeviceErrors c(&other_thread);
        EXPECT_FALSE(BM_CUDA_OK(cudaErrorNotReady));
      }).join();
    }
    EXPECT_FALSE(BM_CUDA_OK(cudaErrorMemoryAllocation));
  }
  EXPECT_NE(inner.message().find("cudaErrorInvalidValue"), std::string::npos);
  EXPECT_NE(outer.message().find("cudaErrorMemoryAllocation"), std::string::npos);
  EXPECT_NE(other_thread.message().find("cudaErrorNotReady"), std::string::npos);
  // No sink at all: printed, not recorded anywhere, no abort.
  EXPECT_FALSE(BM_CUDA_OK(cudaErrorInvalidValue));
}

}  // namespace
}  // namespace bm::engine::cuda
