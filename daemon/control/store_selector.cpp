#include "daemon/control/store_selector.h"

namespace bm::daemon::control {

absl::StatusOr<common::CommandEnv> command_env(const bmserver::v1::StoreSelector& selector) {
  common::CommandEnv env(selector.env().begin(), selector.env().end());
  if (absl::Status s = common::check_command_env(env); !s.ok()) return s;
  return env;
}

absl::StatusOr<common::StoreRoots> store_roots_for(const bmserver::v1::StoreSelector& selector) {
  absl::StatusOr<common::CommandEnv> env = command_env(selector);
  if (!env.ok()) return env.status();
  return common::resolve_store_roots(common::overlay_env(*std::move(env)));
}

}  // namespace bm::daemon::control
