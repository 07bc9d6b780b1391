#pragma once
#include "daemon/daemon_options.h"

namespace bm::daemon {
// Starts the control plane and the services, waits for SIGTERM/SIGINT, shuts down cleanly. Returns the exit code.
int run_daemon(const DaemonOptions& options);
}  // namespace bm::daemon
