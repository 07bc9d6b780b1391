// The engine's CUDA plugin loader on any machine: missing, unloadable, wrong-ABI and failing plugins give
// clear errors (never a crash), and asking for the "cuda" backend without a usable GPU is a clear error too.
// The fake plugins live in <build>/lib/bmserver-test (tests/unit/engine/backend/CMakeLists.txt).
#include "engine/backend/cuda_plugin.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/backend/cuda/plugin_abi.h"
#include "engine/backend/device_info.h"
#include "engine/models/model_loader.h"
#include "tests/unit/engine/model/test_files.h"
#include "tests/unit/engine/models/random_checkpoint.h"

namespace bm::engine {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

std::filesystem::path build_dir() {
  const char* dir = std::getenv("BMSERVER_BUILD_DIR");
  return dir != nullptr ? std::filesystem::path(dir) : std::filesystem::current_path();
}

std::string fake_plugin(const std::string& name) {
  return (build_dir() / "lib" / "bmserver-test" / ("lib" + name + ".so")).string();
}

TEST(CudaPluginTest, MissingPluginIsUnimplementedAndSaysWhereItLooked) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = create_cuda_backend_from("/nonexistent/libbm_backend_cuda.so", 0);
  ASSERT_FALSE(backend.ok());
  EXPECT_TRUE(absl::IsUnimplemented(backend.status())) << backend.status();
  EXPECT_TRUE(is_backend_unavailable(backend.status()));
  EXPECT_THAT(backend.status().message(), HasSubstr("not installed"));
  EXPECT_THAT(backend.status().message(), HasSubstr("/nonexistent/libbm_backend_cuda.so"));
}

TEST(CudaPluginTest, AFileThatIsNotALibraryIsAClearError) {
  testing::TempDir dir;
  const std::string path = (dir.path() / "libbm_backend_cuda.so").string();
  std::ofstream(path) << "not an ELF file";
  absl::StatusOr<std::unique_ptr<Backend>> backend = create_cuda_backend_from(path, 0);
  ASSERT_FALSE(backend.ok());
  EXPECT_TRUE(absl::IsUnimplemented(backend.status())) << backend.status();
  EXPECT_THAT(backend.status().message(), HasSubstr("could not be loaded"));
}

TEST(CudaPluginTest, WrongAbiVersionIsRefused) {
  const std::string path = fake_plugin("bm_fake_cuda_plugin_old_abi");
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  absl::StatusOr<std::unique_ptr<Backend>> backend = create_cuda_backend_from(path, 0);
  ASSERT_FALSE(backend.ok());
  EXPECT_TRUE(absl::IsUnimplemented(backend.status())) << backend.status();
  EXPECT_THAT(backend.status().message(), HasSubstr("speaks plugin ABI 1"));
  EXPECT_THAT(backend.status().message(), HasSubstr("expects " + std::to_string(BM_CUDA_PLUGIN_ABI_VERSION)));
}

TEST(CudaPluginTest, PluginStatusCodesBecomeStatusesWithTheSentence) {
  const std::string path = fake_plugin("bm_fake_cuda_plugin");
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  struct Case {
    int code;
    absl::StatusCode expected;
  };
  for (const Case& c : {Case{kBmCudaNoDevice, absl::StatusCode::kUnimplemented},
                        Case{kBmCudaDriverTooOld, absl::StatusCode::kUnimplemented},
                        Case{kBmCudaUnsupportedGpu, absl::StatusCode::kUnimplemented},
                        Case{kBmCudaOutOfMemory, absl::StatusCode::kResourceExhausted},
                        Case{kBmCudaError, absl::StatusCode::kInternal}}) {
    absl::StatusOr<std::unique_ptr<Backend>> backend = create_cuda_backend_from(path, c.code);
    ASSERT_FALSE(backend.ok());
    EXPECT_EQ(backend.status().code(), c.expected) << backend.status();
    // Only "cannot run here" lets the daemon's auto backend fall back to the CPU.
    EXPECT_EQ(is_backend_unavailable(backend.status()), c.expected == absl::StatusCode::kUnimplemented);
    EXPECT_THAT(backend.status().message(), HasSubstr("fake plugin status " + std::to_string(c.code)));
  }
  // Success without a backend is a broken plugin, not a crash.
  absl::StatusOr<std::unique_ptr<Backend>> backend = create_cuda_backend_from(path, kBmCudaOk);
  ASSERT_FALSE(backend.ok());
  EXPECT_TRUE(absl::IsInternal(backend.status())) << backend.status();
}

// bm_cuda_create_communicators_v1 (ABI 10, tensor parallelism across GPUs): no libnccl is "unavailable" with a
// sentence naming NCCL; GPUs of different models or a GPU named twice are the caller's to fix.
TEST(CudaPluginTest, CommunicatorStatusCodesBecomeStatusesWithTheSentence) {
  const std::string path = fake_plugin("bm_fake_cuda_plugin");
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  struct Case {
    int code;
    absl::StatusCode expected;
  };
  for (const Case& c : {Case{kBmCudaNoDevice, absl::StatusCode::kUnimplemented},
                        Case{kBmCudaNcclUnavailable, absl::StatusCode::kUnimplemented},
                        Case{kBmCudaMixedGpus, absl::StatusCode::kInvalidArgument},
                        Case{kBmCudaInvalidArgument, absl::StatusCode::kInvalidArgument},
                        Case{kBmCudaOutOfMemory, absl::StatusCode::kResourceExhausted},
                        Case{kBmCudaError, absl::StatusCode::kInternal}}) {
    const std::vector<int32_t> devices = {c.code, 1};
    auto group = create_cuda_communicators_from(path, devices);
    ASSERT_FALSE(group.ok());
    EXPECT_EQ(group.status().code(), c.expected) << group.status();
    EXPECT_EQ(is_backend_unavailable(group.status()), c.expected == absl::StatusCode::kUnimplemented);
    EXPECT_THAT(group.status().message(), HasSubstr("fake plugin status " + std::to_string(c.code) + " for a group of 2"));
    if (c.code == kBmCudaNcclUnavailable) {
      EXPECT_THAT(group.status().message(), HasSubstr("needs NCCL"));
    }
  }
  const std::vector<int32_t> ok = {kBmCudaOk, 1};
  auto broken = create_cuda_communicators_from(path, ok);
  ASSERT_FALSE(broken.ok());
  EXPECT_TRUE(absl::IsInternal(broken.status())) << broken.status();
  auto none = create_cuda_communicators_from(path, {});
  ASSERT_FALSE(none.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(none.status())) << none.status();
}

TEST(CudaPluginTest, CopyBandwidthThroughAFailingPluginIsAnError) {
  const std::string path = fake_plugin("bm_fake_cuda_plugin");
  ASSERT_EQ(setenv("BMSERVER_CUDA_PLUGIN", path.c_str(), 1), 0);
  absl::StatusOr<double> bandwidth = measure_cuda_copy_bandwidth(0, 1 << 20, 3);
  unsetenv("BMSERVER_CUDA_PLUGIN");
  ASSERT_FALSE(bandwidth.ok());
  EXPECT_THAT(bandwidth.status().message(), HasSubstr("no GPU in the fake plugin"));
}

TEST(CudaPluginTest, KvCacheDefaultsToBf16OnEveryBackend) {
  EXPECT_EQ(default_kv_cache_dtype("cpu"), DType::kBF16);
  EXPECT_EQ(default_kv_cache_dtype("cuda"), DType::kBF16);
}

// The real plugin where this build has one (else the missing-plugin error): on a machine without a usable GPU,
// loading a model on "cuda" is a clear Unimplemented error, not a crash.
TEST(CudaPluginTest, LoadingOnCudaWithoutAUsableGpuIsAClearError) {
  testing::TempDir dir;
  ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), testing::RandomCheckpointShape{}));
  LoadOptions options;
  options.backend = "cuda";
  absl::StatusOr<std::unique_ptr<CausalLM>> lm = load_causal_lm(dir.path(), options);
  if (lm.ok()) GTEST_SKIP() << "a usable GPU is present; tests/gpu covers this machine";
  EXPECT_TRUE(absl::IsUnimplemented(lm.status())) << lm.status();
  EXPECT_TRUE(is_backend_unavailable(lm.status())) << "the marker must survive the loader";
  EXPECT_THAT(std::string(lm.status().message()),
              AnyOf(HasSubstr("not installed"), HasSubstr("cannot run here"), HasSubstr("could not be loaded")));
  std::cerr << "cuda backend: " << lm.status().message() << "\n";
}

}  // namespace
}  // namespace bm::engine
