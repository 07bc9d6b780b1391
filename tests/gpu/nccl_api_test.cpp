// The plugin's NCCL plumbing that runs without a GPU (nccl_api.h, nccl_communicator.h): libnccl.so.2 resolved at
// run time with the declarations in nccl_api.h, NCCL's error text, and a group that cannot be created (no GPU
// here) failing with a sentence rather than crashing or hanging. Where libnccl is not installed the tests skip
// with a sentence; where two GPUs are visible the creation test skips (tensor_parallel_gpu_test.cpp creates real
// groups there).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend/cuda/nccl_api.h"
#include "engine/backend/cuda/nccl_communicator.h"

namespace bm::engine::cuda {
namespace {

#define REQUIRE_NCCL(api)                                                                   \
  std::string why;                                                                          \
  const NcclApi* api = nccl_api(&why);                                                      \
  if (api == nullptr) GTEST_SKIP() << "NCCL is not installed here, nothing to check: " << why

TEST(NcclApiTest, LibncclResolvesWithOurDeclarations) {
  REQUIRE_NCCL(api);
  int version = 0;
  ASSERT_EQ(api->get_version(&version), kNcclSuccess);
  // NCCL 2.x encodes 2.28.9 as 22809 (2.9+: major * 10000 + minor * 100 + patch).
  EXPECT_GE(version, 20400) << "the required functions exist since NCCL 2.4";
  for (const void* fn : {reinterpret_cast<const void*>(api->comm_init_all), reinterpret_cast<const void*>(api->all_reduce),
                         reinterpret_cast<const void*>(api->comm_abort), reinterpret_cast<const void*>(api->comm_destroy),
                         reinterpret_cast<const void*>(api->comm_get_async_error),
                         reinterpret_cast<const void*>(api->group_start), reinterpret_cast<const void*>(api->group_end)})
    EXPECT_NE(fn, nullptr);
  std::printf("[ nccl ] version %d\n", version);
}

TEST(NcclApiTest, ErrorTextNamesTheResultAndNcclsSentence) {
  REQUIRE_NCCL(api);
  const std::string text = nccl_error_text(kNcclInvalidArgument);
  EXPECT_NE(text.find("ncclInvalidArgument"), std::string::npos) << text;
  EXPECT_NE(text.find(api->get_error_string(kNcclInvalidArgument)), std::string::npos) << text;
  EXPECT_NE(nccl_error_text(42).find("ncclResult 42"), std::string::npos);
}

TEST(NcclGroupTest, WithoutTwoGpusCreationFailsWithASentence) {
  REQUIRE_NCCL(api);
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    count = 0;
  }
  if (count >= 2) GTEST_SKIP() << count << " GPUs are visible: tensor_parallel_gpu_test.cpp creates real groups";
  std::string error;
  std::shared_ptr<NcclGroup> group = NcclGroup::create(*api, {0, 1}, &error);
  EXPECT_EQ(group, nullptr);
  // Without a driver the CUDA runtime refuses first (cudaGetDevice); with one GPU, ncclCommInitAll does.
  EXPECT_TRUE(error.find("ncclCommInitAll over 2 GPUs failed") != std::string::npos ||
              error.find("cudaGetDevice failed before creating the NCCL communicators") != std::string::npos)
      << error;
  std::printf("[ refusal ] %s\n", error.c_str());
}

}  // namespace
}  // namespace bm::engine::cuda
