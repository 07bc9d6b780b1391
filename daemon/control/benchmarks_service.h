#pragma once
#include <functional>
#include <string>

#include "bmserver/v1/benchmarks.grpc.pb.h"
#include "daemon/bench/benchmark_runner.h"

namespace bm::daemon::serving {
class EngineManager;
}

namespace bm::daemon::control {

// Benchmarks.Run / List over the benchmark runner (daemon/bench).
class BenchmarksService final : public bmserver::v1::Benchmarks::Service {
 public:
  // http_url: the base URL of the daemon's own OpenAI API, which served models are benchmarked through.
  BenchmarksService(serving::EngineManager& engines, std::string state_dir, std::function<std::string()> http_url)
      : runner_(&engines, std::move(http_url), std::move(state_dir)) {}
  grpc::Status Run(grpc::ServerContext*, const bmserver::v1::RunBenchmarkRequest*,
                   grpc::ServerWriter<bmserver::v1::BenchmarkEvent>*) override;
  grpc::Status List(grpc::ServerContext*, const bmserver::v1::ListBenchmarksRequest*,
                    bmserver::v1::ListBenchmarksResponse*) override;

 private:
  bench::BenchmarkRunner runner_;
};

}  // namespace bm::daemon::control
