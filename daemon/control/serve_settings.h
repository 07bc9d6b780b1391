#pragma once
// The one conversion of the wire's serve options into the daemon's ServeSettings, with their checks and
// defaults: `chat serve` (Serving.Serve) and `chat benchmark` (Benchmarks.Run, when it serves the model) both use
// it, so a setting means the same and is refused the same way on either path.
#include "absl/status/statusor.h"
#include "bmserver/v1/models.pb.h"
#include "bmserver/v1/serving.pb.h"
#include "daemon/serving/served_model.h"

namespace bm::daemon::control {

// INVALID_ARGUMENT with a sentence naming the setting when a value is out of range; nothing else is checked here
// (whether the model exists, GPUs are free: the engine manager says).
absl::StatusOr<serving::ServeSettings> serve_settings_from_proto(const bmserver::v1::StoreSelector& store,
                                                                 const bmserver::v1::ServeOptions& options);

}  // namespace bm::daemon::control
