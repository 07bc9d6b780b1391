#include "common/command_env.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace bm::common {
namespace {

TEST(CommandEnv, OnlyTheTravellingVariablesAreTaken) {
  EXPECT_TRUE(check_command_env({{"HF_ENDPOINT", "https://hf-mirror.com"}, {"CUDA_VISIBLE_DEVICES", "1"}}).ok());
  EXPECT_EQ(check_command_env({{"LD_PRELOAD", "x.so"}}).message(),
            "the command's environment variable LD_PRELOAD is not one that travels");
  EXPECT_EQ(check_command_env({{"HF_HOME", "a\nb"}}).message(), "HF_HOME holds a control character");
  EXPECT_EQ(check_command_env({{"HF_TOKEN", std::string(5000, 'x')}}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(CommandEnv, TheCommandsValueWinsOverTheDaemonsAndTheRestFallsThrough) {
  setenv("HF_ENDPOINT", "https://daemon.example", 1);
  setenv("HF_HUB_CACHE", "/daemon/cache", 1);
  GetEnv env = overlay_env({{"HF_HUB_CACHE", "/command/cache"}});
  EXPECT_STREQ(env("HF_HUB_CACHE"), "/command/cache");
  EXPECT_STREQ(env("HF_ENDPOINT"), "https://daemon.example");
  EXPECT_EQ(resolve_store_roots(env).hf_hub_cache, "/command/cache");
  unsetenv("HF_ENDPOINT");
  unsetenv("HF_HUB_CACHE");
  EXPECT_TRUE(is_store_location_variable("MODELSCOPE_CACHE"));
  EXPECT_FALSE(is_store_location_variable("HF_TOKEN"));  // a secret is never written to served.json
}

}  // namespace
}  // namespace bm::common
