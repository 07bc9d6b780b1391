#include "daemon/control/serve_settings.h"

#include <gtest/gtest.h>

#include <string>

#include "engine/backend/cpu/thread_pool.h"

namespace bm::daemon::control {
namespace {

TEST(ServeSettingsFromProto, ZeroFieldsTakeTheDefaultsAndEveryFieldArrives) {
  bmserver::v1::StoreSelector store;
  store.set_hub("ms");
  bmserver::v1::ServeOptions o;
  auto s = serve_settings_from_proto(store, o);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->hub, "ms");
  EXPECT_EQ(s->backend, "auto");
  EXPECT_DOUBLE_EQ(s->gpu_memory_utilization, 0.9);
  EXPECT_EQ(s->max_num_seqs, 256);
  EXPECT_TRUE(s->enable_prefix_caching);

  o.set_backend("cpu");
  o.set_max_num_seqs(8);
  o.set_gpu_memory_utilization(0.5);
  o.set_seed(7);
  o.set_disable_prefix_caching(true);
  o.set_extra_params("--no-enable-prefix-caching");
  s = serve_settings_from_proto(store, o);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->backend, "cpu");
  EXPECT_EQ(s->max_num_seqs, 8);
  EXPECT_DOUBLE_EQ(s->gpu_memory_utilization, 0.5);
  EXPECT_EQ(s->seed, 7u);
  EXPECT_FALSE(s->enable_prefix_caching);
  EXPECT_EQ(s->extra_params, "--no-enable-prefix-caching");
}

TEST(ServeSettingsFromProto, OutOfRangeValuesAreRefusedWithASentence) {
  bmserver::v1::StoreSelector store;
  bmserver::v1::ServeOptions o;
  o.set_backend("tpu");
  EXPECT_EQ(serve_settings_from_proto(store, o).status().message(), "backend must be auto, cuda or cpu, not 'tpu'");
  o.set_backend("cpu");
  o.set_gpu_memory_utilization(1.5);
  EXPECT_EQ(serve_settings_from_proto(store, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.set_gpu_memory_utilization(0);
  o.set_max_num_seqs(-1);
  EXPECT_EQ(serve_settings_from_proto(store, o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ServeSettingsFromProto, ThreadsAndKvCacheDtypeAreCheckedBeforeAnythingLoads) {
  bmserver::v1::StoreSelector store;
  bmserver::v1::ServeOptions o;
  auto s = serve_settings_from_proto(store, o);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->threads, 0);
  EXPECT_EQ(s->kv_cache_dtype, "auto");

  const int32_t cpus = engine::cpu::available_cpus();
  o.set_threads(cpus);
  o.set_kv_cache_dtype("fp32");
  s = serve_settings_from_proto(store, o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->threads, cpus);
  EXPECT_EQ(s->kv_cache_dtype, "float32");  // one spelling from here on
  EXPECT_NE(serve_command_line("m", *s).find("--threads " + std::to_string(cpus) + " --kv-cache-dtype float32"),
            std::string::npos);

  o.set_threads(cpus + 1);
  EXPECT_EQ(serve_settings_from_proto(store, o).status().message(),
            "--threads " + std::to_string(cpus + 1) + " is not possible: the daemon may use " + std::to_string(cpus) +
                " CPUs (its affinity mask); give 1 to " + std::to_string(cpus));
  o.set_threads(-1);
  EXPECT_EQ(serve_settings_from_proto(store, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.set_threads(0);
  o.set_kv_cache_dtype("fp8_e4m3");
  EXPECT_EQ(serve_settings_from_proto(store, o).status().message(),
            "--kv-cache-dtype fp8_e4m3 is not available: the KV cache is bfloat16 (auto) or float32");
  o.set_kv_cache_dtype("int4");
  EXPECT_EQ(serve_settings_from_proto(store, o).status().message(),
            "--kv-cache-dtype must be auto, bfloat16 or float32, not 'int4'");
}

// The media flags arrive through the one parser (daemon/serving/media_options.h): normalised, or refused with
// its sentence before anything loads; --check prints them back as a command line.
TEST(ServeSettingsFromProto, MediaFlagsAreNormalisedOrRefused) {
  bmserver::v1::StoreSelector store;
  bmserver::v1::ServeOptions o;
  o.set_limit_mm_per_prompt(R"({ "image" : 2 })");
  o.set_mm_processor_kwargs(R"({"min_pixels": 3136})");
  o.set_allowed_local_media_path("/");
  o.set_allowed_media_domains("A.com, b.org");
  auto s = serve_settings_from_proto(store, o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->limit_mm_per_prompt, R"({"image":2,"video":999})");
  EXPECT_EQ(s->mm_processor_kwargs, R"({"min_pixels":3136})");
  EXPECT_EQ(s->allowed_local_media_path, "/");
  EXPECT_EQ(s->allowed_media_domains, "a.com,b.org");
  EXPECT_NE(serve_command_line("m", *s).find(
                R"( --limit-mm-per-prompt '{"image":2,"video":999}' --mm-processor-kwargs '{"min_pixels":3136}')"
                " --allowed-local-media-path / --allowed-media-domains a.com,b.org"),
            std::string::npos)
      << serve_command_line("m", *s);
  o.set_limit_mm_per_prompt("{\"image\": \"many\"}");
  EXPECT_EQ(serve_settings_from_proto(store, o).status().message(),
            "--limit-mm-per-prompt 'image' must be a whole number from 0 to 4096");
}

}  // namespace
}  // namespace bm::daemon::control

namespace bm::daemon::control {
namespace {

TEST(CommandCudaVisibleDevices, PhysicalIndicesBecomeTheDaemonsIndices) {
  serving::ServeSettings s;
  ASSERT_TRUE(apply_command_cuda_visible_devices("1", nullptr, s).ok());  // the daemon sees every GPU
  EXPECT_EQ(s.gpus, std::vector<int32_t>{1});
  ASSERT_TRUE(apply_command_cuda_visible_devices("3", "2,3", s).ok());  // the daemon sees GPUs 2 and 3 as 0 and 1
  EXPECT_EQ(s.gpus, std::vector<int32_t>{1});
  EXPECT_EQ(apply_command_cuda_visible_devices("1", "2,3", s).message(),
            "GPU 1 (CUDA_VISIBLE_DEVICES on the command) is not visible to the daemon, whose CUDA_VISIBLE_DEVICES "
            "is 2,3");
  EXPECT_EQ(apply_command_cuda_visible_devices("GPU-8d2c", nullptr, s).code(), absl::StatusCode::kInvalidArgument);
}

TEST(CommandCudaVisibleDevices, NoGpuMeansTheCpuBackend) {
  serving::ServeSettings s;
  ASSERT_TRUE(apply_command_cuda_visible_devices("-1", nullptr, s).ok());
  EXPECT_EQ(s.backend, "cpu");
  s.backend = "cuda";
  EXPECT_FALSE(apply_command_cuda_visible_devices("-1", nullptr, s).ok());
}

TEST(ServeSettingsFromProto, KeepsTheCommandsStoreLocationButNotItsToken) {
  bmserver::v1::StoreSelector store;
  (*store.mutable_env())["HF_HUB_CACHE"] = "/command/cache";
  (*store.mutable_env())["HF_TOKEN"] = "secret";
  (*store.mutable_env())["CUDA_VISIBLE_DEVICES"] = "-1";
  auto s = serve_settings_from_proto(store, {});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->env, (std::map<std::string, std::string>{{"HF_HUB_CACHE", "/command/cache"}}));
  EXPECT_EQ(s->backend, "cpu");
  (*store.mutable_env())["PATH"] = "/x";
  EXPECT_EQ(serve_settings_from_proto(store, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace bm::daemon::control
