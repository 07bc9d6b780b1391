#include "daemon/daemon.h"

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "common/version.h"
#include "daemon/control/control_server.h"
#include "daemon/control/system_service.h"
#include "daemon/daemon_context.h"
#include "daemon/logging.h"

namespace bm::daemon {
namespace {

// Blocked in every thread (threads inherit the mask) and taken synchronously by main with sigwait, so no
// handler ever runs on a gRPC or engine thread.
sigset_t shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// Start-up failures are one plain line on stderr (the journal keeps stderr too).
int fail(const std::string& message) {
  std::fprintf(stderr, "bmserverd: %s\n", message.c_str());
  return 1;
}

}  // namespace

int run_daemon(const DaemonOptions& options) {
  (void)setup_logging(options.log_level);
  sigset_t signals = shutdown_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that goes away must not kill the daemon

  absl::StatusOr<common::ListenAddress> address = common::parse_listen_address(options.listen);
  if (!address.ok()) return fail(std::string(address.status().message()));

  DaemonContext context{options};
  control::SystemService system_service(context);
  std::vector<grpc::Service*> services = {&system_service};

  control::ControlServer server;
  control::ControlServerOptions server_options{*address, options.user_mode, options.tls_cert, options.tls_key,
                                               options.token_file};
  if (absl::Status s = server.start(server_options, services); !s.ok()) return fail(std::string(s.message()));

  std::error_code ec;
  std::filesystem::create_directories(options.state_dir, ec);
  if (ec) {
    server.shutdown(0);
    return fail("cannot create state dir " + options.state_dir + ": " + ec.message());
  }
  spdlog::info("bmserverd {} listening on {} (state dir {}, {} mode)", common::version(), options.listen,
               options.state_dir, options.user_mode ? "user" : "system");

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  spdlog::info("received {}, shutting down", signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
  server.shutdown(/*grace_seconds=*/10);
  spdlog::info("stopped");
  return 0;
}

}  // namespace bm::daemon
