#include "common/command_env.h"

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "absl/strings/str_cat.h"

namespace bm::common {

const std::vector<std::string>& command_env_names() {
  static const std::vector<std::string> names = {
      "HF_ENDPOINT",      "HF_TOKEN",          "HF_HUB_CACHE",        "HUGGINGFACE_HUB_CACHE", "HF_HOME",
      "MODELSCOPE_CACHE", "MODELSCOPE_DOMAIN", "MODELSCOPE_ENDPOINT", "MODELSCOPE_API_TOKEN",  "CUDA_VISIBLE_DEVICES",
  };
  return names;
}

bool is_store_location_variable(const std::string& name) {
  return name == "HF_HUB_CACHE" || name == "HUGGINGFACE_HUB_CACHE" || name == "HF_HOME" || name == "MODELSCOPE_CACHE";
}

absl::Status check_command_env(const CommandEnv& env) {
  const std::vector<std::string>& names = command_env_names();
  for (const auto& [name, value] : env) {
    if (std::find(names.begin(), names.end(), name) == names.end())
      return absl::InvalidArgumentError(
          absl::StrCat("the command's environment variable ", name.substr(0, 64), " is not one that travels"));
    if (value.size() > 4096) return absl::InvalidArgumentError(absl::StrCat(name, " is longer than 4096 bytes"));
    if (std::any_of(value.begin(), value.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; }))
      return absl::InvalidArgumentError(absl::StrCat(name, " holds a control character"));
  }
  return absl::OkStatus();
}

GetEnv overlay_env(CommandEnv env) {
  auto values = std::make_shared<const CommandEnv>(std::move(env));
  return [values](const char* name) -> const char* {
    auto it = values->find(name);
    if (it != values->end() && !it->second.empty()) return it->second.c_str();
    return std::getenv(name);
  };
}

}  // namespace bm::common
