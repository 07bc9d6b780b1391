#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cli/global_options.h"
#include "cli/serve_flags.h"

namespace bm::cli {

struct ServeArgs {
  std::string name;
  ServeFlags serve;
  // The original's --host/--port: the model also gets a listener of its own there.
  std::string host;
  int32_t port = 0;
  bool check = false;  // the original's --check: print the plan, load nothing
};

// `bmserver chat serve`: loads a model in the daemon with progress, returns once it is ready.
int run_serve(const GlobalOptions& options, const ServeArgs& args);
// `bmserver chat ps`: the served models.
int run_ps(const GlobalOptions& options);
// `bmserver chat stop NAME`: unloads a served model.
int run_stop(const GlobalOptions& options, const std::string& name);

}  // namespace bm::cli
