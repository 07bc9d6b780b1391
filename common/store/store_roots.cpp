#include "common/store/store_roots.h"

#include <pwd.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <string_view>

namespace bm::common {
namespace {

std::string env_or_empty(const GetEnv& getenv, const char* name) {
  const char* value = getenv(name);
  return value != nullptr ? std::string(value) : std::string();
}

std::string home_dir(const GetEnv& getenv) {
  std::string home = env_or_empty(getenv, "HOME");
  if (!home.empty()) return home;
  // Python falls back to the password database when HOME is unset (daemons started by init often lack it).
  if (const passwd* pw = ::getpwuid(::getuid()); pw != nullptr && pw->pw_dir != nullptr) return pw->pw_dir;
  return "/";
}

bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

std::string expand_vars(const std::string& path, const GetEnv& getenv) {
  std::string out;
  for (size_t i = 0; i < path.size();) {
    if (path[i] != '$') {
      out += path[i++];
      continue;
    }
    size_t name_begin = i + 1, name_end = name_begin, after = 0;
    if (name_begin < path.size() && path[name_begin] == '{') {
      size_t close = path.find('}', name_begin);
      if (close == std::string::npos) {
        out += path.substr(i);
        break;
      }
      name_begin += 1;
      name_end = close;
      after = close + 1;
    } else {
      while (name_end < path.size() && is_name_char(path[name_end])) ++name_end;
      after = name_end;
    }
    std::string name = path.substr(name_begin, name_end - name_begin);
    const char* value = name.empty() ? nullptr : getenv(name.c_str());
    out += value != nullptr ? std::string(value) : path.substr(i, after - i);
    i = after == i ? i + 1 : after;
  }
  return out;
}

}  // namespace

std::string expand_user_and_vars(const std::string& path, const GetEnv& getenv) {
  std::string expanded = expand_vars(path, getenv);
  if (expanded == "~" || expanded.rfind("~/", 0) == 0) return home_dir(getenv) + expanded.substr(1);
  return expanded;
}

StoreRoots resolve_store_roots(const GetEnv& getenv) {
  StoreRoots roots;
  std::string xdg = env_or_empty(getenv, "XDG_CACHE_HOME");
  std::string hf_home = env_or_empty(getenv, "HF_HOME");
  if (hf_home.empty()) hf_home = (xdg.empty() ? std::string("~/.cache") : xdg) + "/huggingface";
  hf_home = expand_user_and_vars(hf_home, getenv);
  std::string hub_cache = env_or_empty(getenv, "HF_HUB_CACHE");
  if (hub_cache.empty()) hub_cache = env_or_empty(getenv, "HUGGINGFACE_HUB_CACHE");
  if (hub_cache.empty()) hub_cache = hf_home + "/hub";
  roots.hf_hub_cache = expand_user_and_vars(hub_cache, getenv);

  std::string ms = env_or_empty(getenv, "MODELSCOPE_CACHE");
  roots.modelscope_cache_from_env = !ms.empty();
  roots.modelscope_cache = expand_user_and_vars(ms.empty() ? std::string("~/.cache/modelscope/hub") : ms, getenv);

  std::string hub = env_or_empty(getenv, "BMSERVER_HUB");
  roots.default_hub = hub == "ms" ? "ms" : "hf";
  return roots;
}

StoreRoots resolve_store_roots() {
  return resolve_store_roots([](const char* name) { return std::getenv(name); });
}

}  // namespace bm::common
