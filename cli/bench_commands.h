#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cli/global_options.h"
#include "cli/serve_flags.h"

namespace bm::cli {

struct BenchmarkArgs {
  std::string name;  // catalog name or model folder; with endpoint: the name to store results under
  // serve options, as `chat serve` (used when the daemon does not serve the model yet); serve.api_key is the
  // served model's key, or the endpoint's; serve.seed also seeds the prompts
  ServeFlags serve;
  // the sweep
  std::vector<int32_t> prompt_tokens = {500};
  std::vector<int32_t> completion_tokens = {500};
  std::string endpoint;
  std::string model;
  int32_t max_concurrency = 0;
  bool no_store = false;
  bool upload = false;  // the original's --upload: store in PostgreSQL (BMSERVER_POSTGRES_URL must be set)
  std::string csv_file;
  std::string plot_file;
};

struct BenchmarkQueryArgs {
  std::string model;  // empty: every model
  std::string csv_file;
  std::string plot_file;
};

// `bmserver chat benchmark NAME`: runs the sweep in the daemon with live progress, prints a summary table.
int run_benchmark(const GlobalOptions& options, const BenchmarkArgs& args);
// `bmserver chat benchmark list`: one line per (model, GPU, version, P, C) stored.
int run_benchmark_list(const GlobalOptions& options, const BenchmarkQueryArgs& args);
// `bmserver chat benchmark show NAME`: every stored run of a model.
int run_benchmark_show(const GlobalOptions& options, const BenchmarkQueryArgs& args);
// `bmserver chat benchmark export [NAME]`: CSV (stdout or --csv FILE), or JSON with -o json.
int run_benchmark_export(const GlobalOptions& options, const BenchmarkQueryArgs& args);

}  // namespace bm::cli
