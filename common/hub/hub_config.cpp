#include "common/hub/hub_config.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace bm::common {
namespace {

std::string read(const GetEnv& getenv, const char* name) {
  const char* value = getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

std::string strip_trailing_slashes(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

std::string read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::string();
  std::stringstream text;
  text << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(text.str()));
}

std::string hf_home(const GetEnv& getenv) {
  auto env = [&](const char* name) { return read(getenv, name); };
  std::string home = env("HF_HOME");
  if (!home.empty()) return home;
  std::string xdg = env("XDG_CACHE_HOME");
  if (!xdg.empty()) return xdg + "/huggingface";
  return env("HOME") + "/.cache/huggingface";
}

}  // namespace

HubConfig hf_config_from_env() {
  return hf_config_from_env([](const char* name) { return std::getenv(name); });
}

HubConfig ms_config_from_env() {
  return ms_config_from_env([](const char* name) { return std::getenv(name); });
}

HubConfig hf_config_from_env(const GetEnv& getenv) {
  auto env = [&](const char* name) { return read(getenv, name); };
  HubConfig config;
  config.kind = HubKind::kHuggingFace;
  config.endpoint = strip_trailing_slashes(env("HF_ENDPOINT"));
  if (config.endpoint.empty()) config.endpoint = "https://huggingface.co";
  config.token = env("HF_TOKEN");
  if (config.token.empty()) config.token = env("HUGGING_FACE_HUB_TOKEN");
  if (config.token.empty()) {
    std::string path = env("HF_TOKEN_PATH");
    if (path.empty()) path = hf_home(getenv) + "/token";
    config.token = read_token_file(path);
  }
  config.endpoint_variable = "HF_ENDPOINT";
  config.token_variable = "HF_TOKEN";
  config.other_hub_flag = "--hub ms";
  return config;
}

HubConfig ms_config_from_env(const GetEnv& getenv) {
  auto env = [&](const char* name) { return read(getenv, name); };
  HubConfig config;
  config.kind = HubKind::kModelScope;
  std::string endpoint = env("MODELSCOPE_ENDPOINT");
  config.endpoint_variable = "MODELSCOPE_ENDPOINT";
  if (endpoint.empty()) {
    endpoint = env("MODELSCOPE_DOMAIN");
    config.endpoint_variable = "MODELSCOPE_DOMAIN";
  }
  if (endpoint.empty()) endpoint = "www.modelscope.cn";
  if (!absl::StrContains(endpoint, "://")) endpoint = absl::StrCat("https://", endpoint);
  config.endpoint = strip_trailing_slashes(endpoint);
  config.token = env("MODELSCOPE_API_TOKEN");
  config.token_variable = "MODELSCOPE_API_TOKEN";
  config.other_hub_flag = "--hub hf";
  return config;
}

const char* hub_name(HubKind kind) {
  switch (kind) {
    case HubKind::kHuggingFace:
      return "Hugging Face";
    case HubKind::kModelScope:
      return "ModelScope";
  }
  return "?";
}

}  // namespace bm::common
