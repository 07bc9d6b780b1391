#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

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
  // the image workload: images per request (0: text) and their size, "WxH" (empty: 448x448 when images are asked)
  int32_t images_per_prompt = 0;
  std::string image_size;
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

inline constexpr const char* kDefaultImageSize = "448x448";

struct ImageSize {
  int32_t width = 0;
  int32_t height = 0;
};
// --image-size "WIDTHxHEIGHT" (448x448); the sentence to print when it is not two positive integers around an x.
// The range of a size the daemon checks (daemon/bench/synthetic_image.h), one place for the CLI and the API.
absl::StatusOr<ImageSize> parse_image_size(const std::string& text);

// `bmserver chat benchmark NAME`: runs the sweep in the daemon with live progress, prints a summary table.
int run_benchmark(const GlobalOptions& options, const BenchmarkArgs& args);
// `bmserver chat benchmark list`: one line per (model, GPU, version, P, C) stored.
int run_benchmark_list(const GlobalOptions& options, const BenchmarkQueryArgs& args);
// `bmserver chat benchmark show NAME`: every stored run of a model.
int run_benchmark_show(const GlobalOptions& options, const BenchmarkQueryArgs& args);
// `bmserver chat benchmark export [NAME]`: CSV (stdout or --csv FILE), or JSON with -o json.
int run_benchmark_export(const GlobalOptions& options, const BenchmarkQueryArgs& args);

}  // namespace bm::cli
