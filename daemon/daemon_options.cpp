#include "daemon/daemon_options.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/listen_address.h"

namespace bm::daemon {
namespace {

std::string getenv_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

bool is_user_mode() {
  return !getenv_or_empty("XDG_RUNTIME_DIR").empty();
}

std::string default_for(const std::string& key, bool user_mode) {
  if (key == "listen") {
    return common::default_control_address(user_mode);
  }
  if (key == "http_listen") return "127.0.0.1:8080";
  if (key == "log_level") return "info";
  if (key == "http_max_connections") return "1024";
  if (key == "max_waiting_seqs") return "0";
  if (key == "state_dir") {
    // systemd's StateDirectory= exports STATE_DIRECTORY.
    if (std::string s = getenv_or_empty("STATE_DIRECTORY"); !s.empty()) return s;
    if (!user_mode) return "/var/lib/bmserver";
    if (std::string s = getenv_or_empty("XDG_STATE_HOME"); !s.empty()) return s + "/bmserver";
    return getenv_or_empty("HOME") + "/.local/state/bmserver";
  }
  return {};
}

absl::Status check_log_level(const std::string& level) {
  for (const char* ok : {"trace", "debug", "info", "warn", "error", "critical", "off"})
    if (level == ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("log level '", level, "' is not one of trace, debug, info, warn, error, critical, off"));
}

// The state dir must exist or be creatable, and be writable; checked without leaving anything behind.
absl::Status check_state_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p(dir);
  if (p.empty()) return absl::InvalidArgumentError("state dir is empty");
  if (fs::exists(p, ec)) {
    if (!fs::is_directory(p, ec))
      return absl::InvalidArgumentError(absl::StrCat("state dir ", dir, " is not a directory"));
    if (access(dir.c_str(), W_OK | X_OK) != 0)
      return absl::PermissionDeniedError(absl::StrCat("state dir ", dir, " is not writable by this user"));
    return absl::OkStatus();
  }
  fs::path parent = p.parent_path();
  while (!parent.empty() && !fs::exists(parent, ec)) parent = parent.parent_path();
  if (parent.empty()) parent = ".";
  if (!fs::is_directory(parent, ec) || access(parent.c_str(), W_OK | X_OK) != 0)
    return absl::PermissionDeniedError(absl::StrCat("state dir ", dir, " does not exist and cannot be created (",
                                                    parent.string(), " is not writable)"));
  return absl::OkStatus();
}

}  // namespace

const std::vector<OptionSpec>& option_specs() {
  static const std::vector<OptionSpec> specs = {
      {"listen", "control-plane address: unix:/path or tcp:host:port (tcp needs tls_cert, tls_key, token_file)"},
      {"http_listen", "OpenAI API address host:port (default 127.0.0.1:8080)"},
      {"state_dir", "directory for persistent state (served models, benchmark results)"},
      {"log_level", "trace | debug | info | warn | error (default info)"},
      {"tls_cert", "PEM certificate for tcp: control"},
      {"tls_key", "PEM private key for tcp: control"},
      {"token_file", "file holding the bearer token (at least 32 characters) tcp: control clients must send"},
      {"allowed_origins",
       "comma-separated origins browsers may call the OpenAI API from (CORS); * for any; default none"},
      {"http_max_connections", "open HTTP connections at most; more are answered 503 (default 1024)"},
      {"max_waiting_seqs",
       "per served model, sequences that may wait beyond --max-num-seqs before requests get 503 (default 0: 4 x "
       "max-num-seqs)"},
  };
  return specs;
}

std::string env_name(const std::string& key) {
  return "BMSERVER_" + absl::AsciiStrToUpper(key);
}

absl::StatusOr<std::map<std::string, std::string>> parse_config_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("config file ", path, " cannot be read"));
  std::map<std::string, std::string> values;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text.front() == '#') continue;
    size_t eq = text.find('=');
    if (eq == absl::string_view::npos)
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": expected `key = value`"));
    std::string key(absl::StripAsciiWhitespace(text.substr(0, eq)));
    absl::string_view raw = absl::StripAsciiWhitespace(text.substr(eq + 1));
    bool known = false;
    for (const OptionSpec& spec : option_specs()) known |= spec.key == key;
    if (!known) return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": unknown key '", key, "'"));
    // Every setting is a string: TOML requires quotes, and a bare number or boolean is the wrong type.
    if (raw.size() < 2 || raw.front() != '"' || raw.back() != '"')
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_no, ": '", key, "' must be a quoted string, got ", raw));
    std::string value(raw.substr(1, raw.size() - 2));
    if (value.find('"') != std::string::npos || value.find('\\') != std::string::npos)
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_no, ": '", key, "': quotes and escapes inside values are not supported"));
    values[key] = value;
  }
  return values;
}

absl::StatusOr<DaemonOptions> resolve_options(const FlagValues& flags, const std::optional<std::string>& config_path) {
  std::map<std::string, std::string> file_values;
  std::optional<std::string> path = config_path;
  if (!path) {
    if (std::string env = getenv_or_empty("BMSERVER_CONFIG"); !env.empty()) path = env;
  }
  if (path) {
    absl::StatusOr<std::map<std::string, std::string>> parsed = parse_config_file(*path);
    if (!parsed.ok()) return parsed.status();
    file_values = *std::move(parsed);
  }
  DaemonOptions opts;
  opts.user_mode = is_user_mode();
  auto pick = [&](const std::string& key) {
    if (auto it = flags.find(key); it != flags.end()) return it->second;
    if (std::string env = getenv_or_empty(env_name(key).c_str()); !env.empty()) return env;
    if (auto it = file_values.find(key); it != file_values.end()) return it->second;
    return default_for(key, opts.user_mode);
  };
  opts.listen = pick("listen");
  opts.http_listen = pick("http_listen");
  opts.state_dir = pick("state_dir");
  opts.log_level = pick("log_level");
  opts.tls_cert = pick("tls_cert");
  opts.tls_key = pick("tls_key");
  opts.token_file = pick("token_file");

  for (absl::string_view origin : absl::StrSplit(pick("allowed_origins"), ',', absl::SkipWhitespace()))
    opts.allowed_origins.emplace_back(absl::StripAsciiWhitespace(origin));
  if (!absl::SimpleAtoi(pick("http_max_connections"), &opts.http_max_connections) || opts.http_max_connections < 1 ||
      opts.http_max_connections > 1000000)
    return absl::InvalidArgumentError(absl::StrCat("http_max_connections must be an integer in [1, 1000000], got '",
                                                   pick("http_max_connections"), "'"));
  if (!absl::SimpleAtoi(pick("max_waiting_seqs"), &opts.max_waiting_seqs) || opts.max_waiting_seqs < 0 ||
      opts.max_waiting_seqs > 1000000)
    return absl::InvalidArgumentError(
        absl::StrCat("max_waiting_seqs must be an integer in [0, 1000000], got '", pick("max_waiting_seqs"), "'"));

  absl::StatusOr<common::ListenAddress> listen = common::parse_listen_address(opts.listen);
  if (!listen.ok()) return listen.status();
  if (listen->is_tcp() && (opts.tls_cert.empty() || opts.tls_key.empty() || opts.token_file.empty()))
    return absl::InvalidArgumentError(
        absl::StrCat("control address ", opts.listen,
                     " is TCP: set tls_cert, tls_key and token_file (remote control needs TLS and a token)"));
  absl::StatusOr<common::HostPort> http = common::parse_host_port(opts.http_listen);
  if (!http.ok()) return absl::InvalidArgumentError(absl::StrCat("http listen address: ", http.status().message()));
  if (absl::Status s = check_log_level(opts.log_level); !s.ok()) return s;
  if (absl::Status s = check_state_dir(opts.state_dir); !s.ok()) return s;
  return opts;
}

}  // namespace bm::daemon
