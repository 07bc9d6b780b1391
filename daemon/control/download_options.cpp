#include "daemon/control/download_options.h"

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/catalog/catalog.h"
#include "common/identifier_checks.h"
#include "common/store/store_roots.h"
#include "daemon/control/store_selector.h"

namespace bm::daemon::control {
namespace {

namespace v1 = bmserver::v1;

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  int parsed = std::atoi(value);
  return parsed > 0 ? parsed : fallback;
}

}  // namespace

absl::StatusOr<common::DownloadOptions> download_options_for(const v1::StoreSelector& selector,
                                                             const std::string& repo_id, const std::string& revision) {
  absl::StatusOr<common::CommandEnv> env = command_env(selector);
  if (!env.ok()) return env.status();
  common::GetEnv getenv = common::overlay_env(*std::move(env));
  common::StoreRoots roots = common::resolve_store_roots(getenv);
  std::string hub = selector.hub().empty() ? roots.default_hub : selector.hub();
  absl::StatusOr<common::Hub> parsed = common::parse_hub(hub);
  if (!parsed.ok()) return parsed.status();
  common::DownloadOptions options;
  options.repo_id = repo_id;
  options.revision = revision;
  options.max_parallel = env_int("BMSERVER_DOWNLOAD_WORKERS", 8);
  switch (*parsed) {
    case common::Hub::kHuggingFace:
      options.hub = common::hf_config_from_env(getenv);
      options.layout = common::StoreLayout::kHfCache;
      options.root = roots.hf_hub_cache;
      break;
    case common::Hub::kModelScope:
      options.hub = common::ms_config_from_env(getenv);
      options.layout = common::StoreLayout::kMsCache;
      // modelscope >= 1.38 keeps {base}/models/{org}--{name}/snapshots/ with base ~/.cache/modelscope when
      // MODELSCOPE_CACHE is unset (hub-protocols §4.2).
      options.root = roots.modelscope_cache_from_env
                         ? roots.modelscope_cache
                         : std::filesystem::path(roots.modelscope_cache).parent_path().string();
      break;
  }
  if (!selector.local_dir().empty()) {
    if (absl::Status s = common::check_client_path(selector.local_dir(), "--local-dir"); !s.ok()) return s;
    options.layout = common::StoreLayout::kHfLocalDir;
    options.root = selector.local_dir();
  }
  return options;
}

}  // namespace bm::daemon::control
