#pragma once
// Where the hub caches are, resolved from the environment the way the Python libraries resolve them
// (reference/hub-protocols.md §1 and §4.1). The daemon's environment decides; `bmserver env` shows the
// result.
#include <functional>
#include <string>

namespace bm::common {

struct StoreRoots {
  std::string hf_hub_cache;  // HF_HUB_CACHE › HUGGINGFACE_HUB_CACHE › $HF_HOME/hub › $XDG_CACHE_HOME/huggingface/hub
  std::string modelscope_cache;            // MODELSCOPE_CACHE, else ~/.cache/modelscope/hub
  bool modelscope_cache_from_env = false;  // unset: modelscope >= 1.38 also uses ~/.cache/modelscope
  std::string default_hub;                 // BMSERVER_HUB when it is hf or ms, else hf
};

// getenv returns nullptr for an unset variable; an empty value counts as unset.
using GetEnv = std::function<const char*(const char*)>;
StoreRoots resolve_store_roots(const GetEnv& getenv);
StoreRoots resolve_store_roots();  // from this process's environment

// os.path.expanduser(os.path.expandvars(path)) as huggingface_hub applies it: `$VAR` and `${VAR}` are
// replaced when set and left as written otherwise; a leading `~` becomes HOME.
std::string expand_user_and_vars(const std::string& path, const GetEnv& getenv);

}  // namespace bm::common
