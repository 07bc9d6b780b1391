// bmserver: the thin CLI. It talks to bmserverd over gRPC only. CLI11 stays in this file (it costs seconds
// per translation unit): commands are defined here, their logic lives in cli/*_command(s).cpp.
#include <cstdio>
#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/env_command.h"
#include "cli/exit_codes.h"
#include "cli/global_options.h"
#include "common/version.h"

int main(int argc, char** argv) {
  using bm::cli::GlobalOptions;
  using bm::cli::OutputFormat;

  CLI::App app{"bmserver: keep, serve and benchmark large chat models (talks to the bmserverd daemon)"};
  app.fallthrough();  // global options may follow the subcommand: `bmserver env -o json`
  app.require_subcommand(0, 1);
  GlobalOptions global;
  std::string output = "table";
  bool show_version = false;
  app.add_option("--daemon", global.daemon, "daemon address: unix:/path or tcp:host:port  [env BMSERVER_DAEMON]");
  app.add_option("-o,--output", output, "output format")->check(CLI::IsMember({"table", "json"}));
  app.add_flag("--version", show_version, "print the CLI's and the daemon's versions");

  std::function<int()> action;

  CLI::App* env = app.add_subcommand("env", "show GPUs, driver, CUDA/NCCL/cuBLAS versions, CPU and versions");
  env->callback([&] { action = [&] { return bm::cli::run_env(global); }; });

  CLI::App* chat = app.add_subcommand("chat", "chat models: search, list, download, update, remove, serve, benchmark");
  chat->require_subcommand(1);
  // ---- chat subcommands: each block defines its flags and sets `action` ----
  // ---- end of chat subcommands ----

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "bmserver: %s (see bmserver --help)\n", e.what());
    return bm::cli::kExitUsage;
  }
  global.output = output == "json" ? OutputFormat::kJson : OutputFormat::kTable;
  if (show_version) return bm::cli::run_version(global);
  if (!action) {
    std::printf("%s", app.help().c_str());
    return bm::cli::kExitUsage;
  }
  return action();
}
