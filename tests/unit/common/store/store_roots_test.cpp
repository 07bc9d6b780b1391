#include "common/store/store_roots.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace bm::common {
namespace {

GetEnv fake_env(std::map<std::string, std::string> vars) {
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [shared](const char* name) -> const char* {
    auto it = shared->find(name);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

TEST(StoreRoots, HfFollowsHuggingfaceHubPrecedence) {
  std::map<std::string, std::string> env = {{"HOME", "/home/u"}};
  EXPECT_EQ(resolve_store_roots(fake_env(env)).hf_hub_cache, "/home/u/.cache/huggingface/hub");
  env["XDG_CACHE_HOME"] = "/xdg";
  EXPECT_EQ(resolve_store_roots(fake_env(env)).hf_hub_cache, "/xdg/huggingface/hub");
  env["HF_HOME"] = "~/hf";
  EXPECT_EQ(resolve_store_roots(fake_env(env)).hf_hub_cache, "/home/u/hf/hub");
  env["HUGGINGFACE_HUB_CACHE"] = "/legacy";
  EXPECT_EQ(resolve_store_roots(fake_env(env)).hf_hub_cache, "/legacy");
  env["HF_HUB_CACHE"] = "$HOME/${XDG_CACHE_HOME}/c";
  EXPECT_EQ(resolve_store_roots(fake_env(env)).hf_hub_cache, "/home/u//xdg/c");
}

TEST(StoreRoots, EmptyValuesCountAsUnset) {
  EXPECT_EQ(resolve_store_roots(fake_env({{"HOME", "/h"}, {"HF_HUB_CACHE", ""}, {"HF_HOME", ""}})).hf_hub_cache,
            "/h/.cache/huggingface/hub");
}

TEST(StoreRoots, ModelScopeAndDefaultHub) {
  StoreRoots roots = resolve_store_roots(fake_env({{"HOME", "/h"}}));
  EXPECT_EQ(roots.modelscope_cache, "/h/.cache/modelscope/hub");
  EXPECT_FALSE(roots.modelscope_cache_from_env);
  EXPECT_EQ(roots.default_hub, "hf");
  roots = resolve_store_roots(fake_env({{"HOME", "/h"}, {"MODELSCOPE_CACHE", "/ms"}, {"BMSERVER_HUB", "ms"}}));
  EXPECT_EQ(roots.modelscope_cache, "/ms");
  EXPECT_TRUE(roots.modelscope_cache_from_env);
  EXPECT_EQ(roots.default_hub, "ms");
  EXPECT_EQ(resolve_store_roots(fake_env({{"HOME", "/h"}, {"BMSERVER_HUB", "xx"}})).default_hub, "hf");
}

TEST(ExpandUserAndVars, LeavesUnknownVariablesAsWritten) {
  GetEnv env = fake_env({{"HOME", "/h"}, {"A", "x"}});
  EXPECT_EQ(expand_user_and_vars("$A/$B/${A}/${B}/$", env), "x/$B/x/${B}/$");
  EXPECT_EQ(expand_user_and_vars("~", env), "/h");
  EXPECT_EQ(expand_user_and_vars("a~/b", env), "a~/b");
  EXPECT_EQ(expand_user_and_vars("${A", env), "${A");
}

}  // namespace
}  // namespace bm::common
