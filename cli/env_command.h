#pragma once
#include "cli/global_options.h"

namespace bm::cli {
// `bmserver env`: GPUs, driver, CUDA/NCCL/cuBLAS, CPU, versions and store roots, as the daemon detects them.
int run_env(const GlobalOptions& options);
// `bmserver --version`: the CLI's version and, when one answers, the daemon's.
int run_version(const GlobalOptions& options);
}  // namespace bm::cli
