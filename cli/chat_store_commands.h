#pragma once
// `bmserver chat search | list | remove`: the daemon's Models service, rendered as tables or JSON.
#include <string>

#include "cli/global_options.h"

namespace bm::cli {

struct StoreArgs {
  std::string pattern;  // glob on catalog names; empty: all
  std::string series;
  std::string size;
  std::string quant;
  std::string hub;        // hf | ms; empty: the daemon's default (its BMSERVER_HUB, else hf)
  std::string local_dir;  // made absolute here; the daemon reads it
  bool yes = false;       // remove: no prompt
};

int run_search(const GlobalOptions& options, const StoreArgs& args);
int run_list(const GlobalOptions& options, const StoreArgs& args);
// Shows what goes and the bytes freed, asks (refuses when stdin is not a terminal and -y is absent), removes.
int run_remove(const GlobalOptions& options, const StoreArgs& args);

}  // namespace bm::cli
