#include "daemon/service_notifier.h"

#include <systemd/sd-daemon.h>

#include <algorithm>

namespace bm::daemon {

ServiceNotifier::ServiceNotifier() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(/*unset_environment=*/0, &usec) > 0) watchdog_interval_ = std::chrono::microseconds(usec);
}

void ServiceNotifier::status(const std::string& text) {
  if (text == last_status_) return;
  last_status_ = text;
  sd_notifyf(0, "STATUS=%s", text.c_str());
}

void ServiceNotifier::ready(const std::string& status) {
  last_status_ = status;
  sd_notifyf(0, "READY=1\nSTATUS=%s", status.c_str());
}

void ServiceNotifier::stopping() {
  sd_notify(0, "STOPPING=1\nSTATUS=stopping: aborting requests, unloading models");
}

void ServiceNotifier::watchdog() {
  if (watchdog_interval_.count() > 0) sd_notify(0, "WATCHDOG=1");
}

std::chrono::milliseconds ServiceNotifier::tick(std::chrono::milliseconds at_most) const {
  if (watchdog_interval_.count() == 0) return at_most;
  return std::min(at_most, std::chrono::duration_cast<std::chrono::milliseconds>(watchdog_interval_ / 2));
}

}  // namespace bm::daemon
