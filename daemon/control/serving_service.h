#pragma once
#include <functional>
#include <string>

#include "bmserver/v1/serving.grpc.pb.h"
#include "daemon/control/rpc_status.h"
#include "daemon/serving/engine_manager.h"

namespace bm::daemon::control {

// Serving.Serve / Stop / List over the EngineManager.
class ServingService final : public bmserver::v1::Serving::Service {
 public:
  ServingService(serving::EngineManager& manager, std::function<std::string()> http_url)
      : manager_(manager), http_url_(std::move(http_url)) {}
  grpc::Status Serve(grpc::ServerContext*, const bmserver::v1::ServeRequest*,
                     grpc::ServerWriter<bmserver::v1::ServeEvent>*) override;
  grpc::Status Stop(grpc::ServerContext*, const bmserver::v1::StopRequest*, bmserver::v1::StopResponse*) override;
  grpc::Status List(grpc::ServerContext*, const bmserver::v1::ListServedRequest*,
                    bmserver::v1::ListServedResponse*) override;

 private:
  grpc::Status serve_model(grpc::ServerContext*, const bmserver::v1::ServeRequest*,
                           grpc::ServerWriter<bmserver::v1::ServeEvent>*);
  void fill(const serving::ServedModel& model, bmserver::v1::ServedModel* out) const;
  serving::EngineManager& manager_;
  std::function<std::string()> http_url_;
};

}  // namespace bm::daemon::control
