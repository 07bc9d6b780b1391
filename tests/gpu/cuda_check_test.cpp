// The CUDA plugin's device-error sink (engine/backend/cuda/cuda_check.h) without a GPU: the check macros record
// the first failure into the thread's current sink and return from the function instead of aborting.
#include "engine/backend/cuda/cuda_check.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/backend/cuda/device_scratch.h"
#include "engine/backend/cuda/gemm.h"

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

// CudaBackend's routing (DeviceErrorRouter): a failure during a stream capture belongs to that capture. It must
// not make the device's error sticky (that would turn a graph the driver refuses into a dead engine); it stops the
// rest of the capture and comes back from end_capture, without the restart advice. Outside a capture failures are
// the device's again.
TEST(DeviceErrorRouterTest, CaptureFailuresAreNotStickyDeviceFaults) {
  DeviceErrors device;
  DeviceErrorRouter router(&device);
  EXPECT_EQ(router.current(), &device);
  router.begin_capture();
  ASSERT_TRUE(router.capturing());
  EXPECT_NE(router.current(), &device);
  {
    const ScopedDeviceErrors sink(router.current());
    fails_then_continues(cudaSuccess, cudaErrorStreamCaptureUnsupported);
    EXPECT_EQ(reached, 1);
  }
  EXPECT_TRUE(router.failed()) << "the rest of the capture must be skipped";
  EXPECT_FALSE(device.failed()) << "a capture failure must not mark the device failed";
  const std::string why = router.end_capture();
  EXPECT_NE(why.find("cudaErrorStreamCaptureUnsupported"), std::string::npos) << why;
  EXPECT_EQ(why.find("restart"), std::string::npos) << why;
  EXPECT_FALSE(router.capturing());
  EXPECT_FALSE(router.failed());
  EXPECT_EQ(router.current(), &device);
  // A clean capture reports nothing; a fault outside any capture is the device's, sticky.
  router.begin_capture();
  EXPECT_EQ(router.end_capture(), "");
  {
    const ScopedDeviceErrors sink(router.current());
    EXPECT_FALSE(BM_CUDA_OK(cudaErrorIllegalAddress));
  }
  EXPECT_TRUE(device.failed());
  EXPECT_TRUE(router.failed());
  router.begin_capture();
  EXPECT_TRUE(router.failed()) << "a faulted device stays failed during a capture";
  router.end_capture();
}

// The hook a tensor-parallel rank sets to abort its NCCL group (NcclGroup::abort): called once, with the first
// failure, outside the lock (it may read the message back), never for a capture's own failures.
TEST(DeviceErrorsTest, TheFailureHookRunsOnceWithTheFirstFault) {
  DeviceErrors device(/*print=*/false);
  std::vector<std::string> seen;
  device.set_on_failure([&](const std::string& message) {
    seen.push_back(message);
    EXPECT_EQ(device.message(), message) << "the hook runs after the failure is recorded, without the lock held";
  });
  DeviceErrorRouter router(&device);
  router.begin_capture();
  {
    const ScopedDeviceErrors sink(router.current());
    EXPECT_FALSE(BM_CUDA_OK(cudaErrorStreamCaptureUnsupported));
  }
  router.end_capture();
  EXPECT_TRUE(seen.empty()) << "a failed capture is not a device fault";
  {
    const ScopedDeviceErrors sink(router.current());
    EXPECT_FALSE(BM_CUDA_OK(cudaErrorIllegalAddress));
    EXPECT_FALSE(BM_CUDA_OK(cudaErrorLaunchFailure));
  }
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_NE(seen[0].find("cudaErrorIllegalAddress"), std::string::npos) << seen[0];
}

// DeviceScratch with a fake allocator: growth frees the old allocation, except after pin() (a capture began and a
// graph may hold the address), when it is retired and freed only with the scratch (the backend, after its graphs).
std::vector<void*> freed;
cudaError_t fake_allocate(void** pointer, size_t bytes) {
  *pointer = std::malloc(bytes);
  return *pointer != nullptr ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t fake_free(void* pointer) {
  freed.push_back(pointer);
  std::free(pointer);
  return cudaSuccess;
}
bool was_freed(void* pointer) {
  return std::find(freed.begin(), freed.end(), pointer) != freed.end();
}

TEST(DeviceScratchTest, GrowthAfterACaptureRetiresInsteadOfFreeing) {
  freed.clear();
  void* first = nullptr;
  void* second = nullptr;
  void* third = nullptr;
  {
    DeviceScratch scratch(fake_allocate, fake_free);
    ASSERT_EQ(scratch.reserve(256), cudaSuccess);
    first = scratch.data();
    ASSERT_EQ(scratch.reserve(128), cudaSuccess);  // fits: nothing moves
    EXPECT_EQ(scratch.data(), first);
    ASSERT_EQ(scratch.reserve(512), cudaSuccess);  // no graph yet: the old one is freed at once
    second = scratch.data();
    EXPECT_TRUE(was_freed(first));
    scratch.pin();                                  // a capture recorded `second`
    ASSERT_EQ(scratch.reserve(1024), cudaSuccess);  // an eager step grows it afterwards
    third = scratch.data();
    EXPECT_FALSE(was_freed(second)) << "a recorded graph could still replay into it";
    EXPECT_EQ(scratch.num_retired(), 1u);
    EXPECT_EQ(scratch.size(), 1024);
    ASSERT_EQ(scratch.reserve(2048), cudaSuccess);  // not pinned since: freed again
    EXPECT_TRUE(was_freed(third));
    EXPECT_EQ(scratch.num_retired(), 1u);
  }
  EXPECT_TRUE(was_freed(second)) << "retired allocations go with the scratch";
  EXPECT_EQ(freed.size(), 4u);
}

// LtGemm's choice among the heuristic's answers (gemm.h), on fake results: only the ones cuBLASLt marks runnable
// within the workspace, in its order; none leaves the shape to the plain kernel instead of failing the step.
TEST(GemmChoiceTest, UsesRunnableCandidatesAndFallsBackWithoutAny) {
  cublasLtMatmulHeuristicResult_t results[4] = {};
  results[0].state = CUBLAS_STATUS_NOT_SUPPORTED;
  results[1].state = CUBLAS_STATUS_SUCCESS;
  results[1].workspaceSize = 64u << 20;  // more than the 32 MiB workspace
  results[2].state = CUBLAS_STATUS_SUCCESS;
  results[2].workspaceSize = 1u << 20;
  results[3].state = CUBLAS_STATUS_SUCCESS;
  EXPECT_EQ(usable_algorithms(results, 4, 32u << 20), (std::vector<int>{2, 3}));
  EXPECT_EQ(usable_algorithms(results, 2, 32u << 20), std::vector<int>{});
  EXPECT_EQ(usable_algorithms(results, 0, 32u << 20), std::vector<int>{});
  // Refusals of a shape move on to the next candidate / the plain kernel; anything else is a recorded failure.
  EXPECT_TRUE(is_unsupported_shape(CUBLAS_STATUS_NOT_SUPPORTED));
  EXPECT_TRUE(is_unsupported_shape(CUBLAS_STATUS_ARCH_MISMATCH));
  EXPECT_FALSE(is_unsupported_shape(CUBLAS_STATUS_EXECUTION_FAILED));
  EXPECT_FALSE(is_unsupported_shape(CUBLAS_STATUS_INTERNAL_ERROR));
  EXPECT_FALSE(is_unsupported_shape(CUBLAS_STATUS_SUCCESS));
}

// The per-shape choice by measured time (gemm.h, ranked_candidates): fastest first, the earlier candidate (the
// heuristic's preference, the GEMV kernel last) on equal times, failed candidates dropped, none left when all
// failed (the shape then runs on the plain kernel).
TEST(GemmChoiceTest, RanksMeasuredCandidatesFastestFirst) {
  using Times = std::vector<std::optional<float>>;
  EXPECT_EQ(ranked_candidates(Times{0.30f, 0.10f, 0.20f}), (std::vector<int>{1, 2, 0}));
  // Ties keep candidate order, so equal measurements always choose the same.
  EXPECT_EQ(ranked_candidates(Times{0.20f, 0.10f, 0.10f, 0.10f}), (std::vector<int>{1, 2, 3, 0}));
  // A refused or failed candidate (nullopt, NaN, negative) is never chosen.
  EXPECT_EQ(ranked_candidates(Times{std::nullopt, 0.50f, std::nullopt, 0.40f}), (std::vector<int>{3, 1}));
  EXPECT_EQ(ranked_candidates(Times{std::nanf(""), -1.0f, 2.0f}), std::vector<int>{2});
  // The GEMV kernel (the last candidate) wins only when strictly faster than every cuBLASLt algorithm.
  EXPECT_EQ(ranked_candidates(Times{0.05f, 0.05f}).front(), 0);
  EXPECT_EQ(ranked_candidates(Times{0.05f, 0.04f}).front(), 1);
  // All failed, or nothing to time: empty (the plain kernel).
  EXPECT_EQ(ranked_candidates(Times{std::nullopt, std::nullopt}), std::vector<int>{});
  EXPECT_EQ(ranked_candidates(Times{}), std::vector<int>{});
}

// Which row counts are timed: the decode graphs' batch shapes (1, 2, 4, 8, multiples of 8 up to 256), not
// arbitrary prefill lengths.
TEST(GemmChoiceTest, TimesDecodeBatchShapesOnly) {
  for (int64_t n : {1, 2, 3, 5, 7, 8, 16, 24, 64, 256}) EXPECT_TRUE(timed_rows(n)) << n;
  for (int64_t n : {0, 9, 12, 17, 100, 257, 264, 512, 8192}) EXPECT_FALSE(timed_rows(n)) << n;
}

}  // namespace
}  // namespace bm::engine::cuda
