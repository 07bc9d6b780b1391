#include "daemon/serving/engine_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace bm::daemon::serving {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class IdleGenerator final : public Generator {
 public:
  absl::StatusOr<std::unique_ptr<GenerationHandle>> submit(std::vector<int32_t>, const GenerationParams&, EventCallback,
                                                           std::shared_ptr<const bm::engine::PromptMedia>) override {
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
  std::set<std::string> failing;   // load returns an error
  std::set<std::string> throwing;  // load throws
  std::string held;                // load waits until `release` is set
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  EngineFactory factory() {
    EngineFactory f;
    f.resolve = [](const std::string& name, const ServeSettings&) -> absl::StatusOr<ResolvedModel> {
      ResolvedModel m;
      m.name = name;
      m.repo_id = "org/" + name;
      m.path = "/models/" + name;
      return m;
    };
    f.load = [this](const ResolvedModel& m, const ServeSettings& s,
                    const ProgressCallback&) -> absl::StatusOr<LoadedEngine> {
      if (failing.count(m.name)) return absl::DataLossError("model.safetensors of " + m.name + " is truncated");
      if (throwing.count(m.name)) throw std::runtime_error("[json.exception.type_error.302] type must be number");
      if (m.name == held) released.wait();
      {
        std::lock_guard<std::mutex> lock(mutex);
        loaded_gpus.push_back(s.gpus);
        loaded_settings.push_back(s);
      }
      LoadedEngine e;
      e.generator = std::make_unique<IdleGenerator>();
      e.backend = s.backend == "cpu" ? "cpu" : "cuda";
      // One rank per tensor-parallel rank, as the adapter reports them (devices unknown to it: -1).
      for (int32_t r = 0; r < std::max(1, s.tensor_parallel_size); ++r)
        e.ranks.push_back(RankMemory{r, -1, 1000 + r, 50});
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

  void write_state(const std::string& text) { std::ofstream(state_dir_ / "served.json", std::ios::binary) << text; }
  std::string read_state() {
    std::ifstream in(state_dir_ / "served.json", std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::vector<std::string> state_dir_names() {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(state_dir_))
      names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
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

// Tensor parallelism across GPUs (docs/tensor-parallel.md): several --gpus are one group, one rank per GPU.
absl::StatusOr<std::shared_ptr<ServedModel>> serve_tp(EngineManager& m, const std::string& name, std::string backend,
                                                      std::vector<int32_t> gpus, int32_t tensor_parallel_size) {
  ServeCommand c;
  c.name = name;
  c.settings.backend = std::move(backend);
  c.settings.gpus = std::move(gpus);
  c.settings.tensor_parallel_size = tensor_parallel_size;
  return m.serve(c, [](const ServeProgress&) {});
}

TEST_F(EngineManagerTest, SeveralGpusAreOneTensorParallelGroupOfThatSize) {
  EngineManager m(state_dir_.string(), registry_, fake_.factory(), 3);
  auto served = serve(m, "a", "cuda", {2, 0});
  ASSERT_TRUE(served.ok()) << served.status();
  ASSERT_EQ(fake_.loaded_settings.size(), 1u);
  EXPECT_EQ(fake_.loaded_settings[0].gpus, (std::vector<int32_t>{2, 0})) << "rank r on the r-th GPU named";
  EXPECT_EQ(fake_.loaded_settings[0].tensor_parallel_size, 2) << "the size is the GPU count when not given";
  EXPECT_EQ(registry_.find("a")->settings.tensor_parallel_size, 2) << "chat ps shows the size";
  EXPECT_EQ(registry_.find("a")->settings.gpus, (std::vector<int32_t>{2, 0}));
  // chat ps: each rank on its GPU of the group, in order, with its memory.
  const std::vector<RankMemory>& ranks = registry_.find("a")->ranks;
  ASSERT_EQ(ranks.size(), 2u);
  EXPECT_EQ(ranks[0].gpu, 2);
  EXPECT_EQ(ranks[1].gpu, 0);
  EXPECT_EQ(ranks[1].weight_bytes, 1001);
  // Both are claimed: another model cannot take either, and the third GPU is still free.
  auto refused = serve(m, "b", "cuda", {0});
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status())) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("GPU 0 is held by the engine serving 'a'"));
  auto third = serve(m, "c", "auto");
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(fake_.loaded_gpus.back(), std::vector<int32_t>{1});
  ASSERT_TRUE(m.stop("a").ok());
  EXPECT_TRUE(serve(m, "b", "cuda", {0, 2}).ok()) << "stop released both GPUs";
}

TEST_F(EngineManagerTest, AGivenTensorParallelSizeMustMatchTheGpuCount) {
  EngineManager m(state_dir_.string(), registry_, fake_.factory(), 4);
  auto refused = serve_tp(m, "a", "cuda", {0, 1}, 4);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("--tensor-parallel-size 4 does not match the 2 GPUs --gpus names"));
  auto one_gpu = serve_tp(m, "a", "auto", {1}, 2);
  ASSERT_FALSE(one_gpu.ok());
  EXPECT_THAT(std::string(one_gpu.status().message()), HasSubstr("does not match the 1 GPU --gpus names"));
  auto twice = serve(m, "a", "cuda", {1, 1});
  ASSERT_FALSE(twice.ok());
  EXPECT_THAT(std::string(twice.status().message()), HasSubstr("names a GPU twice"));
  EXPECT_TRUE(fake_.loaded_gpus.empty()) << "nothing loaded";
  EXPECT_EQ(registry_.find("a"), nullptr);
  auto matching = serve_tp(m, "a", "cuda", {3, 2}, 2);
  ASSERT_TRUE(matching.ok()) << matching.status();
  EXPECT_EQ(fake_.loaded_settings.back().gpus, (std::vector<int32_t>{3, 2}));
}

TEST_F(EngineManagerTest, ATensorParallelSizeWithoutGpusTakesTheFirstFreeOnes) {
  EngineManager m(state_dir_.string(), registry_, fake_.factory(), 4);
  ASSERT_TRUE(serve(m, "a", "cuda", {1}).ok());
  auto served = serve_tp(m, "b", "auto", {}, 2);
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(fake_.loaded_settings.back().gpus, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(fake_.loaded_settings.back().tensor_parallel_size, 2);
}

TEST_F(EngineManagerTest, AutoWithTooFewFreeGpusForTheSizeIsRefusedNamingTheHoldersNeverRunOnTheCpu) {
  EngineManager m(state_dir_.string(), registry_, fake_.factory(), 2);
  ASSERT_TRUE(serve(m, "a", "cuda", {1}).ok());
  auto refused = serve_tp(m, "b", "auto", {}, 2);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status())) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("needs 2 free GPUs, but only 1 of 2 are free"));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("GPU 1 by 'a'"));
  auto too_many = serve_tp(m, "b", "auto", {}, 4);
  ASSERT_FALSE(too_many.ok());
  EXPECT_THAT(std::string(too_many.status().message()), HasSubstr("needs 4 GPUs, but this daemon sees 2"));
  EXPECT_EQ(fake_.loaded_gpus.size(), 1u) << "no CPU fall back was loaded";
  EXPECT_EQ(registry_.find("b"), nullptr);
}

TEST_F(EngineManagerTest, WithoutAnyGpuAutoRunsATensorParallelSizeOnCpuRanks) {
  EngineManager m(state_dir_.string(), registry_, fake_.factory(), 0);
  auto served = serve_tp(m, "a", "auto", {}, 2);
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_TRUE(fake_.loaded_gpus.back().empty()) << "no GPU: the CPU's ranks, as auto does with one rank";
  auto on_cuda = serve_tp(m, "b", "cuda", {}, 2);
  ASSERT_FALSE(on_cuda.ok());
  EXPECT_THAT(std::string(on_cuda.status().message()), HasSubstr("needs 2 GPUs, but this daemon sees 0"));
}

TEST_F(EngineManagerTest, TheCpuBackendIgnoresGpusAndKeepsItsSize) {
  EngineManager m(state_dir_.string(), registry_, fake_.factory(), 2);
  auto served = serve_tp(m, "a", "cpu", {0, 1}, 1);
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(fake_.loaded_settings.back().tensor_parallel_size, 1);
  EXPECT_TRUE(serve(m, "b", "cuda", {0, 1}).ok()) << "the CPU model holds no GPU";
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

TEST_F(EngineManagerTest, TheStateFileIsPrivateAndLeavesNoTempFileBehind) {
  EngineManager m(state_dir_.string(), registry_, fake_.factory(), 0);
  ASSERT_TRUE(serve(m, "a", "cpu").ok());
  struct stat st {};
  ASSERT_EQ(::stat(m.state_file().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "it holds API keys";
  EXPECT_EQ(state_dir_names(), std::vector<std::string>{"served.json"});
  m.shutdown();
}

// Each of these used to reach nlohmann's exceptions (or a silent "nothing restored" that the next serve then
// overwrote); now the file is kept for a look and the daemon starts with nothing.
TEST_F(EngineManagerTest, ACorruptOrWrongTypedStateFileIsMovedAsideAndNothingIsRestored) {
  const std::string bad_files[] = {
      "{\"version\": 1, \"served\": [{\"name\": \"a\", \"settings\": {\"backend\": \"cpu\"",  // truncated
      "\x7f\x45LF garbage",
      R"({"version": 1, "served": [{"name": "a", "settings": {"gpus": "zero"}}]})",
      R"({"version": 1, "served": [{"name": ["a"]}]})",
  };
  for (const std::string& bad : bad_files) {
    std::filesystem::remove_all(state_dir_);
    std::filesystem::create_directories(state_dir_);
    write_state(bad);
    ModelRegistry fresh;
    FakeFactory again;
    EngineManager m(state_dir_.string(), fresh, again.factory(), 0);
    m.restore();
    m.shutdown();
    EXPECT_TRUE(fresh.list().empty()) << bad;
    EXPECT_TRUE(again.loaded_settings.empty()) << bad;
    std::vector<std::string> names = state_dir_names();
    ASSERT_EQ(names.size(), 1u) << bad;
    EXPECT_THAT(names[0], ::testing::StartsWith("served.json.corrupt-")) << bad;
    std::ifstream aside(state_dir_ / names[0], std::ios::binary);
    std::stringstream kept;
    kept << aside.rdbuf();
    EXPECT_EQ(kept.str(), bad) << "the corrupt file is kept as it was";
    // The daemon goes on: a serve now writes a fresh state file.
    EngineManager after(state_dir_.string(), fresh, again.factory(), 0);
    ASSERT_TRUE(serve(after, "b", "cpu").ok());
    EXPECT_THAT(read_state(), HasSubstr("\"b\""));
    after.shutdown();
  }
}

TEST_F(EngineManagerTest, AModelThatFailsToComeBackIsListedFailedWhileTheOthersServe) {
  write_state(R"({"version": 1, "served": [
      {"name": "good", "settings": {"backend": "cpu"}},
      {"name": "broken", "settings": {"backend": "cpu"}},
      {"name": "thrower", "settings": {"backend": "cpu"}},
      {"name": "odd", "settings": {"backend": "warp"}}]})");
  fake_.failing = {"broken"};
  fake_.throwing = {"thrower"};
  EngineManager m(state_dir_.string(), registry_, fake_.factory(), 0);
  m.restore();
  m.wait_for_restore();
  ASSERT_NE(registry_.find("good"), nullptr);
  EXPECT_EQ(registry_.find("good")->state(), ModelState::kReady);
  struct Expect {
    const char* name;
    const char* error;
  };
  for (const Expect& e : {Expect{"broken", "is truncated"}, Expect{"thrower", "type must be number"},
                          Expect{"odd", "backend 'warp' is not one of auto, cuda, cpu"}}) {
    std::shared_ptr<ServedModel> model = registry_.find(e.name);
    ASSERT_NE(model, nullptr) << e.name;
    EXPECT_EQ(model->state(), ModelState::kFailed) << e.name;
    EXPECT_THAT(model->error(), HasSubstr(e.error));
  }
  // Stopping a failed model forgets it; the state file keeps the rest for the next start.
  ASSERT_TRUE(m.stop("broken").ok());
  EXPECT_EQ(registry_.find("broken"), nullptr);
  std::string state = read_state();
  EXPECT_THAT(state, Not(HasSubstr("\"broken\"")));
  EXPECT_THAT(state, HasSubstr("\"good\""));
  EXPECT_THAT(state, HasSubstr("\"thrower\""));
  // Serving a failed model again replaces its entry.
  fake_.throwing.clear();
  absl::StatusOr<std::shared_ptr<ServedModel>> again = serve(m, "thrower", "cpu");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(registry_.find("thrower")->state(), ModelState::kReady);
  m.shutdown();
}

TEST_F(EngineManagerTest, AThrowingLoadFailsItsServeAndReleasesItsGpu) {
  fake_.throwing = {"a"};
  EngineManager m(state_dir_.string(), registry_, fake_.factory(), 1);
  absl::StatusOr<std::shared_ptr<ServedModel>> served = serve(m, "a", "cuda", {0});
  ASSERT_FALSE(served.ok());
  EXPECT_TRUE(absl::IsInternal(served.status())) << served.status();
  EXPECT_THAT(std::string(served.status().message()), HasSubstr("loading a failed: [json.exception"));
  EXPECT_EQ(registry_.find("a"), nullptr);
  EXPECT_TRUE(serve(m, "b", "cuda", {0}).ok()) << "GPU 0 was released";
}

TEST_F(EngineManagerTest, AModelStillComingBackStaysInTheStateFileWhenAnotherIsServed) {
  {
    EngineManager m(state_dir_.string(), registry_, fake_.factory(), 0);
    ASSERT_TRUE(serve(m, "slow", "cpu").ok());
    m.shutdown();
  }
  ModelRegistry fresh;
  FakeFactory again;
  again.held = "slow";
  EngineManager m(state_dir_.string(), fresh, again.factory(), 0);
  m.restore();
  ASSERT_TRUE(serve(m, "quick", "cpu").ok());  // persists while "slow" is still loading
  std::string state = read_state();
  EXPECT_THAT(state, HasSubstr("\"slow\""));
  EXPECT_THAT(state, HasSubstr("\"quick\""));
  again.release.set_value();
  m.shutdown();
}

TEST_F(EngineManagerTest, PathsAndSettingsFromOutsideAreCheckedBeforeAnythingLoads) {
  EngineManager m(state_dir_.string(), registry_, fake_.factory(), 0);
  struct Case {
    std::string name;
    std::string local_dir;
    const char* message;
  };
  const Case cases[] = {
      {"/models/../etc", "", "model folder \"/models/../etc\" contains a '..' part"},
      {"../models/x", "", "is not an absolute path"},
      {"./x", "", "is not an absolute path"},
      {"org/name", "", "neither a catalog name nor an absolute model folder path"},
      {"qwen2.5-0.5b-origin", "relative/store", "--local-dir \"relative/store\" is not an absolute path"},
      {"qwen2.5-0.5b-origin", "/store/../../etc", "contains a '..' part"},
  };
  for (const Case& c : cases) {
    ServeCommand command;
    command.name = c.name;
    command.settings.local_dir = c.local_dir;
    absl::StatusOr<std::shared_ptr<ServedModel>> served = m.serve(command, [](const ServeProgress&) {});
    ASSERT_FALSE(served.ok()) << c.name;
    EXPECT_TRUE(absl::IsInvalidArgument(served.status())) << served.status();
    EXPECT_THAT(std::string(served.status().message()), HasSubstr(c.message));
  }
  EXPECT_TRUE(fake_.loaded_settings.empty());
  EXPECT_TRUE(registry_.list().empty());
}

}  // namespace
}  // namespace bm::daemon::serving
