#pragma once
// systemd's service protocol (Type=notify): READY=1 once the daemon can be used, STATUS= lines while it gets
// there, STOPPING=1 on shutdown and WATCHDOG=1 keep-alives when the unit sets WatchdogSec=. Outside systemd
// (no NOTIFY_SOCKET) every call does nothing.
#include <chrono>
#include <string>

namespace bm::daemon {

class ServiceNotifier {
 public:
  ServiceNotifier();
  // Sends STATUS= when it differs from the last one sent (the main loop calls it on every tick).
  void status(const std::string& text);
  void ready(const std::string& status);
  void stopping();
  void watchdog();
  // How long the main loop may sleep between calls: half the watchdog interval, capped at `at_most`.
  std::chrono::milliseconds tick(std::chrono::milliseconds at_most) const;

 private:
  std::chrono::microseconds watchdog_interval_{0};  // 0: no watchdog
  std::string last_status_;
};

}  // namespace bm::daemon
