#pragma once
// What a request's StoreSelector says beyond hub and folder: the command's own environment (common/command_env.h).
#include "absl/status/statusor.h"
#include "bmserver/v1/models.pb.h"
#include "common/command_env.h"
#include "common/store/store_roots.h"

namespace bm::daemon::control {

// The variables the command sent, checked (INVALID_ARGUMENT names a bad one).
absl::StatusOr<common::CommandEnv> command_env(const bmserver::v1::StoreSelector& selector);
// The store roots as the command's environment over the daemon's resolves them.
absl::StatusOr<common::StoreRoots> store_roots_for(const bmserver::v1::StoreSelector& selector);

}  // namespace bm::daemon::control
