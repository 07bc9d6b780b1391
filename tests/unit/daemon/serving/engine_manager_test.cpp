#include "daemon/serving/engine_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

namespace bm::daemon::serving {
namespace {

using ::testing::HasSubstr;

class IdleGenerator final : public Generator {
 public:
  absl::StatusOr<std::unique_ptr<GenerationHandle>> submit(std::vector<int32_t>, const GenerationParams&,
                                                           EventCallback) override {
    return absl::UnavailableError("idle");
  }
  GeneratorStats stats() const override { return {}; }
  int32_t max_model_len() const override { return 128; }
  int32_t max_num_seqs() const override { return 4; }
};

// Resolves any name to itself and "loads" it on whatever backend the settings ask for, recording the GPUs the
// manager handed over.
struct FakeFactory {
  std::mutex mutex;  // restore() loads from several threads
  std::vector<std::vector<int32_t>> loaded_gpus;
  std::vector<ServeSettings> loaded_settings;
  EngineFactory factory() {
    EngineFactory f;
    f.resolve = [](const std::string& name, const ServeSettings&) -> absl::StatusOr<ResolvedModel> {
      ResolvedModel m;
      m.name = name;
      m.repo_id = "org/" + name;
      m.path = "/models/" + name;
      return m;
    };
    f.load = [this](const ResolvedModel&, const ServeSettings& s,
                    const ProgressCallback&) -> absl::StatusOr<LoadedEngine> {
      {
        std::lock_guard<std::mutex> lock(mutex);
        loaded_gpus.push_back(s.gpus);
        loaded_settings.push_back(s);
      }
      LoadedEngine e;
      e.generator = std::make_unique<IdleGenerator>();
      e.backend = s.backend == "cpu" ? "cpu" : "cuda";
      return e;
    };
    return f;
  }
};

class EngineManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_dir_ =
        std::filesystem::temp_directory_path() / ("bm-engine-manager-" + std::to_string(::getpid()) + "-" +
                                                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(state_dir_);
  }
  void TearDown() override { std::filesystem::remove_all(state_dir_); }

  absl::StatusOr<std::shared_ptr<ServedModel>> serve(EngineManager& m, const std::string& name, std::string backend,
                                                     std::vector<int32_t> gpus = {}, bool enforce_eager = false) {
    ServeCommand c;
    c.name = name;
    c.settings.enforce_eager = enforce_eager;
    c.settings.backend = std::move(backend);
    c.settings.gpus = std::move(gpus);
    return m.serve(c, [](const ServeProgress&) {});
  }

  std::filesystem::path state_dir_;
  ModelRegistry registry_;
  FakeFactory fake_;
};

TEST_F(EngineManagerTest, EachModelTakesTheFirstFreeGpu) {
  EngineManager m(state_dir_.string(), registry_, fake_.factory(), /*num_gpus=*/2);
  ASSERT_TRUE(serve(m, "a", "auto").ok());
  ASSERT_TRUE(serve(m, "b", "cuda").ok());
  ASSERT_EQ(fake_.loaded_gpus.size(), 2u);
  EXPECT_EQ(fake_.loaded_gpus[0], std::vector<int32_t>{0});
  EXPECT_EQ(fake_.loaded_gpus[1], std::vector<int32_t>{1});
  EXPECT_EQ(registry_.find("b")->settings.gpus, std::vector<int32_t>{1});
}

TEST_F(EngineManagerTest, AHeldGpuIsRefusedWithResourceExhaustedAndFreedByStop) {
  EngineManager m(state_dir_.string(), registry_, fake_.factory(), 2);
  ASSERT_TRUE(serve(m, "a", "cuda", {1}).ok());
  auto refused = serve(m, "b", "cuda", {1});
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status())) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("GPU 1 is held by the engine serving 'a'"));
  EXPECT_EQ(registry_.find("b"), nullptr) << "a refused model leaves nothing behind";
  ASSERT_TRUE(m.stop("a").ok());
  EXPECT_TRUE(serve(m, "b", "cuda", {1}).ok());
}

TEST_F(EngineManagerTest, WhenEveryGpuIsHeldCudaIsRefusedAndAutoRunsOnTheCpu) {
  EngineManager m(state_dir_.string(), registry_, fake_.factory(), 1);
  ASSERT_TRUE(serve(m, "a", "cuda").ok());
  auto refused = serve(m, "b", "cuda");
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status())) << refused.status();
  auto on_cpu = serve(m, "c", "auto");
  ASSERT_TRUE(on_cpu.ok()) << on_cpu.status();
  EXPECT_TRUE(fake_.loaded_gpus.back().empty()) << "auto with no free GPU is handed none";
}

TEST_F(EngineManagerTest, SeveralGpusAreRefusedUntilTensorParallelismExists) {
  EngineManager m(state_dir_.string(), registry_, fake_.factory(), 2);
  auto refused = serve(m, "a", "cuda", {0, 1});
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsUnimplemented(refused.status())) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("tensor parallelism"));
  EXPECT_TRUE(fake_.loaded_gpus.empty());
  EXPECT_TRUE(serve(m, "a", "cuda", {0}).ok()) << "the refusal held no GPU";
}

TEST_F(EngineManagerTest, TheCpuBackendHoldsNoGpu) {
  EngineManager m(state_dir_.string(), registry_, fake_.factory(), 1);
  ASSERT_TRUE(serve(m, "a", "cpu").ok());
  EXPECT_TRUE(fake_.loaded_gpus[0].empty());
  EXPECT_TRUE(serve(m, "b", "cuda").ok());
  EXPECT_EQ(fake_.loaded_gpus[1], std::vector<int32_t>{0});
}

TEST_F(EngineManagerTest, ServedModelsArePersistedAndRestored) {
  {
    EngineManager m(state_dir_.string(), registry_, fake_.factory(), 0);
    ASSERT_TRUE(serve(m, "a", "cpu", {}, /*enforce_eager=*/true).ok());
    ASSERT_TRUE(serve(m, "b", "cpu").ok());
    ASSERT_TRUE(m.stop("b").ok());
    m.shutdown();
  }
  ModelRegistry fresh;
  FakeFactory again;
  EngineManager m(state_dir_.string(), fresh, again.factory(), 0);
  m.restore();
  m.shutdown();  // joins the restore threads
  ASSERT_EQ(again.loaded_gpus.size(), 1u) << "only 'a' was still served";
  EXPECT_TRUE(again.loaded_settings[0].enforce_eager) << "served again with its settings";
}

TEST_F(EngineManagerTest, ModelsRestoredTogetherAfterARestartTakeDifferentGpus) {
  {
    EngineManager m(state_dir_.string(), registry_, fake_.factory(), 2);
    ASSERT_TRUE(serve(m, "a", "cuda").ok());
    ASSERT_TRUE(serve(m, "b", "cuda").ok());
    m.shutdown();
  }
  ModelRegistry fresh;
  FakeFactory again;
  EngineManager m(state_dir_.string(), fresh, again.factory(), 2);
  m.restore();  // both in parallel, neither naming a GPU
  m.shutdown();
  ASSERT_EQ(again.loaded_gpus.size(), 2u);
  std::vector<std::vector<int32_t>> gpus = again.loaded_gpus;
  std::sort(gpus.begin(), gpus.end());
  EXPECT_EQ(gpus, (std::vector<std::vector<int32_t>>{{0}, {1}}));
}

}  // namespace
}  // namespace bm::daemon::serving
