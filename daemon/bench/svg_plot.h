#pragma once
// A self-contained SVG of benchmark results: throughput and latency against concurrency, one line per
// (model, P, C), for a person to look at (no plotting library: plain SVG text).
#include <string>
#include <vector>

#include "bmserver/v1/benchmarks.pb.h"

namespace bm::daemon::bench {

std::string render_svg_plot(const std::vector<bmserver::v1::BenchmarkResult>& results, const std::string& title);

}  // namespace bm::daemon::bench
