#pragma once
// bmserverd's settings. Each comes, in order of precedence, from a flag, a BMSERVER_* environment variable,
// the config file (TOML subset: `key = value`), or its default.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace bm::daemon {

struct DaemonOptions {
  std::string listen;       // unix:/path or tcp:host:port
  std::string http_listen;  // host:port of the OpenAI API
  std::string state_dir;
  std::string log_level;  // trace | debug | info | warn | error
  std::string tls_cert;   // PEM files; required with a tcp: listen address
  std::string tls_key;
  std::string token_file;  // bearer token for tcp: control; required with a tcp: listen address
  bool user_mode = false;  // XDG_RUNTIME_DIR is set: socket 0600 under it, state under XDG_STATE_HOME
  // OpenAI API limits (docs/limits-and-security.md).
  std::vector<std::string> allowed_origins;  // CORS; empty: none, "*": any
  int http_max_connections = 1024;
  int64_t max_waiting_seqs = 0;  // per served model; 0: 4 × its max_num_seqs
};

// One setting as it may be given on the command line (unset when the flag was absent).
using FlagValues = std::map<std::string, std::string>;

struct OptionSpec {
  std::string key;  // config-file key; the flag is --key with '_' as '-', the env var BMSERVER_KEY
  std::string description;
};
const std::vector<OptionSpec>& option_specs();

// Merges flags, environment, the config file (flag --config or BMSERVER_CONFIG) and defaults, then validates.
absl::StatusOr<DaemonOptions> resolve_options(const FlagValues& flags, const std::optional<std::string>& config_path);

// Parses the config file; an unknown key or a wrong type is an error naming the file, line and key.
absl::StatusOr<std::map<std::string, std::string>> parse_config_file(const std::string& path);

std::string env_name(const std::string& key);

}  // namespace bm::daemon
