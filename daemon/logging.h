#pragma once
#include <string>

#include "absl/status/status.h"

namespace bm::daemon {
// stderr logging through spdlog. Under journald (JOURNAL_STREAM set) lines carry sd-daemon <N> priority
// prefixes and no timestamp, since the journal adds its own.
absl::Status setup_logging(const std::string& level);
}  // namespace bm::daemon
