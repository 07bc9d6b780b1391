#pragma once
// `bmserver chat download` and `bmserver chat update`: the daemon downloads (it owns the store), the CLI
// renders the progress it streams: a bar on a terminal, a plain line every few seconds otherwise, JSON lines
// with -o json.
#include <string>

#include "cli/global_options.h"

namespace bm::cli {

struct DownloadArgs {
  std::string name;
  std::string hub;
  std::string local_dir;
  std::string revision;
};

struct UpdateArgs {
  std::string pattern;
  std::string hub;
  std::string local_dir;
  bool yes = false;
};

int run_download(const GlobalOptions& options, const DownloadArgs& args);
int run_update(const GlobalOptions& options, const UpdateArgs& args);

}  // namespace bm::cli
