#include "daemon/control/rpc_status.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"

namespace bm::daemon::control {

grpc::Status to_grpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::Status internal_error(const char* rpc, const char* what) {
  spdlog::error("{} failed: {}", rpc, what);
  return grpc::Status(grpc::StatusCode::INTERNAL, absl::StrCat(rpc, " failed: ", what));
}

}  // namespace bm::daemon::control
