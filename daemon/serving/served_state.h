#pragma once
// served.json: what the daemon serves and with which settings, so that a restarted daemon serves the same models.
// The file is read back strictly: a field of the wrong type makes the whole file invalid (the daemon then moves
// it aside and restores nothing) rather than restoring a model with a setting nobody asked for.
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/serving/served_model.h"

namespace bm::daemon::serving {

struct ServeCommand {
  std::string name;  // catalog name or model folder
  ServeSettings settings;
};

// Larger files are not served-model lists this daemon wrote; they are treated as corrupt.
inline constexpr size_t kMaxServedStateBytes = 16 << 20;

std::string served_state_to_json(const std::vector<ServeCommand>& served);

// INVALID_ARGUMENT with a sentence naming the first offending field (e.g. `served[1].settings.gpus`).
absl::StatusOr<std::vector<ServeCommand>> parse_served_state(std::string_view text);

}  // namespace bm::daemon::serving
