#include "daemon/control/benchmarks_service.h"

#include <mutex>

#include "daemon/control/serving_service.h"

namespace bm::daemon::control {
namespace {

// A database or endpoint that cannot be reached is a failed precondition of the call, not an unavailable
// daemon: the CLI reads UNAVAILABLE as "no daemon answered" and would print the wrong sentence.
absl::Status reachable_daemon(const absl::Status& s) {
  if (s.code() != absl::StatusCode::kUnavailable) return s;
  return absl::FailedPreconditionError(s.message());
}

}  // namespace

grpc::Status BenchmarksService::Run(grpc::ServerContext* context, const bmserver::v1::RunBenchmarkRequest* request,
                                    grpc::ServerWriter<bmserver::v1::BenchmarkEvent>* writer) {
  std::mutex writer_mutex;
  auto emit = [&](const bmserver::v1::BenchmarkEvent& event) {
    std::lock_guard<std::mutex> lock(writer_mutex);
    if (!context->IsCancelled()) writer->Write(event);
  };
  // A client that goes away (Ctrl-C) stops the sweep; nothing is stored then.
  return guarded("Benchmarks.Run", [&] {
    absl::Status s = runner_.run(*request, emit, [context] { return context->IsCancelled(); });
    return to_grpc(reachable_daemon(s));
  });
}

grpc::Status BenchmarksService::List(grpc::ServerContext*, const bmserver::v1::ListBenchmarksRequest* request,
                                     bmserver::v1::ListBenchmarksResponse* response) {
  return guarded("Benchmarks.List", [&] {
    absl::StatusOr<bmserver::v1::ListBenchmarksResponse> listed = runner_.list(*request);
    if (!listed.ok()) return to_grpc(reachable_daemon(listed.status()));
    *response = std::move(*listed);
    return grpc::Status::OK;
  });
}

}  // namespace bm::daemon::control
