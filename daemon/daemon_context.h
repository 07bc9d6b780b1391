#pragma once
// What the services of one daemon share. Owned by main; services hold a reference for the daemon's lifetime.
#include "daemon/daemon_options.h"

namespace bm::daemon {

struct DaemonContext {
  DaemonOptions options;
};

}  // namespace bm::daemon
