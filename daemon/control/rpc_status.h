#pragma once
// How a control RPC turns its outcome into a gRPC status: absl codes map one to one (they share the canonical
// numbers) with the sentence kept, and an exception out of a handler becomes INTERNAL with its text (and a log
// line) instead of gRPC's bare "Unexpected error in RPC handling".
#include <exception>
#include <string>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace bm::daemon::control {

grpc::Status to_grpc(const absl::Status& status);

// Logs and converts; `rpc` names the call, e.g. "Models.Download".
grpc::Status internal_error(const char* rpc, const char* what);

template <typename Body>
grpc::Status guarded(const char* rpc, Body&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    return internal_error(rpc, e.what());
  } catch (...) {
    return internal_error(rpc, "unknown exception");
  }
}

}  // namespace bm::daemon::control
