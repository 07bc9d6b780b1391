#pragma once
#include "bmserver/v1/system.grpc.pb.h"
#include "daemon/daemon_context.h"

namespace bm::daemon::control {

// System.Env and System.Version: the daemon detects (it owns the GPUs), the CLI renders.
class SystemService final : public bmserver::v1::System::Service {
 public:
  explicit SystemService(const DaemonContext& context) : context_(context) {}
  grpc::Status Env(grpc::ServerContext*, const bmserver::v1::EnvRequest*, bmserver::v1::EnvResponse*) override;
  grpc::Status Version(grpc::ServerContext*, const bmserver::v1::VersionRequest*,
                       bmserver::v1::VersionResponse*) override;

 private:
  grpc::Status env(bmserver::v1::EnvResponse* response);
  const DaemonContext& context_;
};

}  // namespace bm::daemon::control
