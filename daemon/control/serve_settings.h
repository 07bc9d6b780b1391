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
// The store selector's command environment (common/command_env.h) is applied too: the store-location variables
// are kept in the settings, and CUDA_VISIBLE_DEVICES picks the GPUs when --gpus does not.
absl::StatusOr<serving::ServeSettings> serve_settings_from_proto(const bmserver::v1::StoreSelector& store,
                                                                 const bmserver::v1::ServeOptions& options);

// The `bmserver chat serve` command line that asks for exactly these settings (every setting spelled out), for
// `chat serve --check`.
std::string serve_command_line(const std::string& name, const serving::ServeSettings& settings);

// CUDA_VISIBLE_DEVICES as set on a command, in the physical numbering (or relative to the daemon's own
// CUDA_VISIBLE_DEVICES, `daemon_value`, when it has one), turned into the daemon's GPU indices; "-1" (no GPU)
// selects the cpu backend. FAILED_PRECONDITION for a GPU the daemon does not see, INVALID_ARGUMENT for a value
// it cannot read.
absl::Status apply_command_cuda_visible_devices(const std::string& value, const char* daemon_value,
                                                serving::ServeSettings& settings);

}  // namespace bm::daemon::control
