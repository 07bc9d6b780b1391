#include "daemon/serving/served_state.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace bm::daemon::serving {
namespace {

using ::testing::HasSubstr;

TEST(ServedStateTest, EverySettingRoundTrips) {
  ServeCommand c;
  c.name = "/models/tiny";
  c.settings.hub = "ms";
  c.settings.local_dir = "/store";
  c.settings.backend = "cpu";
  c.settings.gpus = {1};
  c.settings.max_model_len = 512;
  c.settings.gpu_memory_utilization = 0.5;
  c.settings.max_num_seqs = 3;
  c.settings.max_num_batched_tokens = 64;
  c.settings.seed = 18446744073709551615ull;
  c.settings.api_key = "k3y";
  c.settings.kv_cache_bytes = 1 << 20;
  c.settings.enforce_eager = true;
  c.settings.enable_prefix_caching = false;
  c.settings.extra_params = "--no-enable-prefix-caching";
  c.settings.limit_mm_per_prompt = R"({"image":4,"video":1})";
  c.settings.mm_processor_kwargs = R"({"max_pixels":1003520})";
  c.settings.allowed_local_media_path = "/srv/media";
  c.settings.allowed_media_domains = "a.com,b.org";
  c.settings.env = {{"HF_HUB_CACHE", "/command/cache"}};
  c.settings.listen_host = "0.0.0.0";
  c.settings.listen_port = 8001;
  absl::StatusOr<std::vector<ServeCommand>> back = parse_served_state(served_state_to_json({c}));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 1u);
  const ServeSettings& s = (*back)[0].settings;
  EXPECT_EQ((*back)[0].name, c.name);
  EXPECT_EQ(s.hub, "ms");
  EXPECT_EQ(s.local_dir, "/store");
  EXPECT_EQ(s.backend, "cpu");
  EXPECT_EQ(s.gpus, std::vector<int32_t>{1});
  EXPECT_EQ(s.max_model_len, 512);
  EXPECT_EQ(s.gpu_memory_utilization, 0.5);
  EXPECT_EQ(s.max_num_seqs, 3);
  EXPECT_EQ(s.max_num_batched_tokens, 64);
  EXPECT_EQ(s.seed, 18446744073709551615ull);
  EXPECT_EQ(s.api_key, "k3y");
  EXPECT_EQ(s.kv_cache_bytes, 1u << 20);
  EXPECT_TRUE(s.enforce_eager);
  EXPECT_FALSE(s.enable_prefix_caching);
  EXPECT_EQ(s.extra_params, "--no-enable-prefix-caching");
  EXPECT_EQ(s.limit_mm_per_prompt, R"({"image":4,"video":1})");
  EXPECT_EQ(s.mm_processor_kwargs, R"({"max_pixels":1003520})");
  EXPECT_EQ(s.allowed_local_media_path, "/srv/media");
  EXPECT_EQ(s.allowed_media_domains, "a.com,b.org");
  EXPECT_EQ(s.env, (std::map<std::string, std::string>{{"HF_HUB_CACHE", "/command/cache"}}));
  EXPECT_EQ(s.listen_host, "0.0.0.0");
  EXPECT_EQ(s.listen_port, 8001);
}

TEST(ServedStateTest, MissingSettingsTakeDefaultsAndUnknownKeysAreIgnored) {
  auto back = parse_served_state(
      R"({"version": 1, "served": [{"name": "a", "settings": {"backend": "cpu", "added_later": [1]}}, {"name": "b"}]})");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)[0].settings.backend, "cpu");
  EXPECT_EQ((*back)[0].settings.max_num_seqs, 256);
  EXPECT_EQ((*back)[1].settings.backend, "auto");
}

// Each of these would have thrown nlohmann::type_error out of restore() (and ended the daemon) before.
TEST(ServedStateTest, WrongTypesAndGarbageAreErrorsNamingTheField) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {"", "not valid JSON"},
      {"{\"version\": 1, \"served\": [", "not valid JSON"},
      {"\x01\x02garbage", "not valid JSON"},
      {"[]", "not a JSON object"},
      {"{\"served\": []}", "'version' must be 1"},
      {"{\"version\": 2, \"served\": []}", "'version' must be 1"},
      {"{\"version\": 1, \"served\": {}}", "'served' must be an array"},
      {"{\"version\": 1, \"served\": [3]}", "served[0] must be an object"},
      {"{\"version\": 1, \"served\": [{\"name\": 5}]}", "served[0].name must be a non-empty string"},
      {"{\"version\": 1, \"served\": [{\"name\": \"\"}]}", "served[0].name must be a non-empty string"},
      {"{\"version\": 1, \"served\": [{\"name\": \"a\", \"settings\": []}]}", "served[0].settings must be an object"},
      {R"({"version": 1, "served": [{"name": "a"}, {"name": "b", "settings": {"gpus": "0"}}]})",
       "served[1].settings.gpus must be an array of GPU indices"},
      {R"({"version": 1, "served": [{"name": "a", "settings": {"gpus": [1.5]}}]})", "gpus must be an array"},
      {R"({"version": 1, "served": [{"name": "a", "settings": {"max_num_seqs": 4294967296}}]})",
       "max_num_seqs must be a 32-bit integer"},
      {R"({"version": 1, "served": [{"name": "a", "settings": {"seed": -1}}]})", "seed must be a non-negative"},
      {R"({"version": 1, "served": [{"name": "a", "settings": {"api_key": null}}]})", "api_key must be a string"},
      {R"({"version": 1, "served": [{"name": "a", "settings": {"enforce_eager": "yes"}}]})",
       "enforce_eager must be true or false"},
      {R"({"version": 1, "served": [{"name": "a", "settings": {"gpu_memory_utilization": "0.9"}}]})",
       "gpu_memory_utilization must be a number"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<ServeCommand>> parsed = parse_served_state(c.text);
    ASSERT_FALSE(parsed.ok()) << c.text;
    EXPECT_TRUE(absl::IsInvalidArgument(parsed.status())) << c.text;
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(c.message)) << c.text;
  }
}

TEST(ServedStateTest, AnOversizedFileIsRefusedWithoutParsing) {
  std::string huge(kMaxServedStateBytes + 1, ' ');
  auto parsed = parse_served_state(huge);
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("more than"));
}

}  // namespace
}  // namespace bm::daemon::serving
