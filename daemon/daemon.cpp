#include "daemon/daemon.h"

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/version.h"
#include "daemon/control/benchmarks_service.h"
#include "daemon/control/control_server.h"
#include "daemon/control/models_service.h"
#include "daemon/control/serving_service.h"
#include "daemon/control/system_service.h"
#include "daemon/daemon_context.h"
#include "daemon/instance_lock.h"
#include "daemon/logging.h"
#include "daemon/openai/api_server.h"
#include "daemon/openai/model_listeners.h"
#include "daemon/service_notifier.h"
#include "daemon/serving/engine_manager.h"
#include "engine/backend/device_info.h"

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

// Created 0700 when missing: it holds served.json, whose API keys are nobody else's business. An existing dir
// (systemd's StateDirectory=, say) keeps the mode its owner chose.
absl::Status prepare_state_dir(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return absl::OkStatus();
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError("cannot create state dir " + dir + ": " + ec.message());
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  return absl::OkStatus();
}

}  // namespace

int run_daemon(const DaemonOptions& options) {
  (void)setup_logging(options.log_level);
  sigset_t signals = shutdown_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that goes away must not kill the daemon

  absl::StatusOr<common::ListenAddress> address = common::parse_listen_address(options.listen);
  if (!address.ok()) return fail(std::string(address.status().message()));

  absl::StatusOr<common::HostPort> http_address = common::parse_host_port(options.http_listen);
  if (!http_address.ok()) return fail(std::string(http_address.status().message()));

  // The state dir comes first: the lock in it decides whether this daemon may run at all, before it touches the
  // socket of one that already does.
  if (absl::Status s = prepare_state_dir(options.state_dir); !s.ok()) return fail(std::string(s.message()));
  absl::StatusOr<InstanceLock> lock = InstanceLock::acquire(options.state_dir);
  if (!lock.ok()) return fail(std::string(lock.status().message()));

  DaemonContext context{options};
  serving::ModelRegistry registry;
  openai::ApiServerOptions api_options;
  api_options.http.host = http_address->host;
  api_options.http.port = http_address->port;
  api_options.http.max_connections = options.http_max_connections;
  api_options.allowed_origins = options.allowed_origins;
  api_options.max_waiting_seqs = options.max_waiting_seqs;
  openai::ApiServer api(api_options, registry);
  // Declared before the engines: they close these listeners when they stop a model, down to their destructor.
  openai::ModelListeners model_listeners(api_options);
  int num_gpus = static_cast<int>(engine::detect_devices().gpus.size());
  serving::EngineManager engines(options.state_dir, registry, serving::default_engine_factory(), num_gpus);
  engines.set_listener_hooks(
      {[&model_listeners](const std::shared_ptr<serving::ServedModel>& m) { return model_listeners.open(m); },
       [&model_listeners](const std::string& name) { model_listeners.close(name); }});

  control::SystemService system_service(context);
  control::ServingService serving_service(engines, [&api] { return api.base_url(); });
  control::ModelsService models_service([&engines](const std::string& name, const std::string& repo_id) {
    return engines.is_served(name) || engines.is_served(repo_id);
  });
  control::BenchmarksService benchmarks_service(engines, options.state_dir, [&api] { return api.base_url(); });
  std::vector<grpc::Service*> services = {&system_service, &serving_service, &models_service, &benchmarks_service};

  control::ControlServer server;
  control::ControlServerOptions server_options{*address, options.user_mode, options.tls_cert, options.tls_key,
                                               options.token_file};
  if (absl::Status s = server.start(server_options, services); !s.ok()) return fail(std::string(s.message()));
  if (absl::Status s = api.start(); !s.ok()) {
    server.shutdown(0);
    return fail(std::string(s.message()));
  }
  spdlog::info("bmserverd {} listening on {} (state dir {}, {} mode); OpenAI API on {}", common::version(),
               options.listen, options.state_dir, options.user_mode ? "user" : "system", api.base_url());
  engines.restore();

  // READY=1 only once the control socket listens (above) and every restored model is loaded or failed; until then
  // STATUS= says which are loading. The same loop sends the watchdog keep-alive and waits for SIGTERM / SIGINT.
  ServiceNotifier notifier;
  bool ready = false;
  int signal_number = 0;
  while (signal_number <= 0) {
    if (!ready) {
      std::vector<std::string> loading = engines.restoring_names();
      if (loading.empty()) {
        size_t num_failed = 0;
        std::vector<std::shared_ptr<serving::ServedModel>> models = registry.list();
        for (const auto& m : models)
          if (m->state() == serving::ModelState::kFailed) ++num_failed;
        notifier.ready(absl::StrCat("serving ", models.size() - num_failed, " model(s)",
                                    num_failed ? absl::StrCat(", ", num_failed, " failed") : "", "; OpenAI API on ",
                                    api.base_url()));
        ready = true;
      } else {
        notifier.status(absl::StrCat("restoring served models: loading ", absl::StrJoin(loading, ", ")));
      }
    }
    notifier.watchdog();
    auto tick = notifier.tick(ready ? std::chrono::milliseconds(5000) : std::chrono::milliseconds(100));
    timespec timeout{static_cast<time_t>(tick.count() / 1000), static_cast<long>(tick.count() % 1000) * 1000000};
    signal_number = sigtimedwait(&signals, nullptr, &timeout);
  }
  notifier.stopping();
  spdlog::info("received {}, shutting down", signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
  // Clients first (their requests are aborted), then the engines, then the control plane.
  api.stop();
  model_listeners.close_all();
  engines.shutdown();
  server.shutdown(/*grace_seconds=*/10);
  spdlog::info("stopped");
  return 0;
}

}  // namespace bm::daemon
