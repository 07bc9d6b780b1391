// bmserverd: the daemon. CLI11 stays in this file (it costs seconds per translation unit).
#include <csignal>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <optional>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "common/version.h"
#include "daemon/daemon.h"
#include "daemon/daemon_options.h"

namespace {

std::string flag_name(const std::string& key) {
  std::string flag = "--" + key;
  for (char& c : flag)
    if (c == '_') c = '-';
  return flag;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "bmserverd: the BMServer daemon. It owns the GPUs, the model store and the loaded engines;\n"
      "the `bmserver` CLI controls it over gRPC, clients use its OpenAI-compatible HTTP API."};
  app.set_version_flag("--version", std::string(bm::common::version()));
  std::string footer =
      "\nEvery setting can also be given as an environment variable or in the config file (`key = \"value\"`).\n"
      "Precedence: flag > environment > config file > default.\n";
  std::map<std::string, std::string> values;
  for (const bm::daemon::OptionSpec& spec : bm::daemon::option_specs()) {
    app.add_option(flag_name(spec.key), values[spec.key],
                   spec.description + "  [env " + bm::daemon::env_name(spec.key) + "]");
    footer += "  " + flag_name(spec.key) + "  ~  " + bm::daemon::env_name(spec.key) + "  ~  " + spec.key + "\n";
  }
  std::string config_path;
  app.add_option("--config", config_path, "config file (TOML subset)  [env BMSERVER_CONFIG]");
  app.footer(footer);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "bmserverd: %s (see bmserverd --help)\n", e.what());
    return 2;
  }

  bm::daemon::FlagValues flags;
  for (const bm::daemon::OptionSpec& spec : bm::daemon::option_specs())
    if (app.get_option(flag_name(spec.key))->count() > 0) flags[spec.key] = values[spec.key];
  std::optional<std::string> config;
  if (app.get_option("--config")->count() > 0) config = config_path;

  absl::StatusOr<bm::daemon::DaemonOptions> options = bm::daemon::resolve_options(flags, config);
  if (!options.ok()) {
    std::fprintf(stderr, "bmserverd: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  // The last line of defence: whatever escaped start-up or shutdown is one sentence and a failed exit, not an
  // abort with a core dump (each thread catches its own).
  try {
    return bm::daemon::run_daemon(*options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bmserverd: internal error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "bmserverd: internal error (unknown exception)\n");
  }
  return 1;
}
