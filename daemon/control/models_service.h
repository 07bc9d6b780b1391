#pragma once
// The Models service (DESIGN §3–4): the catalog joined with the model store. Search/List/Remove are in
// models_service.cpp; Download/Update are in models_download.cpp.
#include <functional>
#include <mutex>
#include <string>

#include "bmserver/v1/models.grpc.pb.h"

namespace bm::daemon::control {

class ModelsService final : public bmserver::v1::Models::Service {
 public:
  // Whether a model is being served now (by catalog name or repo id); the serving layer provides it, and
  // Remove refuses such models.
  using IsServed = std::function<bool(const std::string& name, const std::string& repo_id)>;
  explicit ModelsService(IsServed is_served) : is_served_(std::move(is_served)) {}

  grpc::Status Search(grpc::ServerContext*, const bmserver::v1::SearchRequest*, bmserver::v1::SearchResponse*) override;
  grpc::Status List(grpc::ServerContext*, const bmserver::v1::SearchRequest*, bmserver::v1::SearchResponse*) override;
  grpc::Status Remove(grpc::ServerContext*, const bmserver::v1::RemoveRequest*, bmserver::v1::RemoveResponse*) override;
  grpc::Status Download(grpc::ServerContext*, const bmserver::v1::DownloadRequest*,
                        grpc::ServerWriter<bmserver::v1::DownloadEvent>*) override;
  grpc::Status Update(grpc::ServerContext*, const bmserver::v1::UpdateRequest*,
                      grpc::ServerWriter<bmserver::v1::DownloadEvent>*) override;

 private:
  grpc::Status download(grpc::ServerContext*, const bmserver::v1::DownloadRequest*,
                        grpc::ServerWriter<bmserver::v1::DownloadEvent>*);
  grpc::Status update(grpc::ServerContext*, const bmserver::v1::UpdateRequest*,
                      grpc::ServerWriter<bmserver::v1::DownloadEvent>*);
  IsServed is_served_;
  std::mutex remove_mutex_;  // one removal at a time: the second sees what the first left
};

}  // namespace bm::daemon::control
