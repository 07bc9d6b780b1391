#include "cli/daemon_client.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cli/exit_codes.h"
#include "common/listen_address.h"

namespace bm::cli {
namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// User-mode socket first (a user's own daemon), then the system service's.
std::string default_address() {
  std::string user = common::default_control_address(/*user_mode=*/true);
  std::string system = common::default_control_address(/*user_mode=*/false);
  if (user != system && std::filesystem::exists(user.substr(5))) return user;
  return system;
}

}  // namespace

std::string no_daemon_message(const std::string& address, const std::string& detail) {
  return absl::StrCat("no bmserverd is answering at ", address, detail.empty() ? "" : " (" + detail + ")",
                      "; start it with `systemctl start bmserverd`, or run `bmserverd` in user mode, "
                      "or point --daemon / BMSERVER_DAEMON at a running one");
}

absl::StatusOr<DaemonClient> DaemonClient::connect(const std::string& explicit_address) {
  DaemonClient client;
  client.address_ = !explicit_address.empty()         ? explicit_address
                    : !env("BMSERVER_DAEMON").empty() ? env("BMSERVER_DAEMON")
                                                      : default_address();
  absl::StatusOr<common::ListenAddress> parsed = common::parse_listen_address(client.address_);
  if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat("--daemon: ", parsed.status().message()));

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  if (parsed->is_tcp()) {
    grpc::SslCredentialsOptions ssl;
    if (std::string ca = env("BMSERVER_TLS_CA"); !ca.empty()) ssl.pem_root_certs = read_text(ca);
    std::shared_ptr<grpc::ChannelCredentials> creds = grpc::SslCredentials(ssl);
    std::string token(absl::StripAsciiWhitespace(env("BMSERVER_TOKEN")));
    if (token.empty())
      return absl::InvalidArgumentError("a tcp: daemon address needs BMSERVER_TOKEN (its bearer token)");
    creds = grpc::CompositeChannelCredentials(creds, grpc::AccessTokenCredentials(token));
    if (std::string name = env("BMSERVER_TLS_SERVER_NAME"); !name.empty()) args.SetSslTargetNameOverride(name);
    client.channel_ = grpc::CreateCustomChannel(parsed->grpc_target(), creds, args);
    if (!client.channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5)))
      return absl::UnavailableError(no_daemon_message(client.address_, "no TLS connection within 5 s"));
  } else {
    // A missing or dead socket fails at once here rather than after gRPC's reconnect backoff.
    if (!std::filesystem::exists(parsed->unix_path))
      return absl::UnavailableError(no_daemon_message(client.address_, "no socket file"));
    if (access(parsed->unix_path.c_str(), R_OK | W_OK) != 0)
      return absl::PermissionDeniedError(absl::StrCat("no permission to use ", client.address_,
                                                      "; add yourself to the `bmserver` group or run with sudo"));
    client.channel_ = grpc::CreateCustomChannel(parsed->grpc_target(), grpc::InsecureChannelCredentials(), args);
    if (!client.channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(3)))
      return absl::UnavailableError(no_daemon_message(client.address_, "the socket does not accept connections"));
  }
  return client;
}

std::unique_ptr<grpc::ClientContext> DaemonClient::context(std::chrono::seconds timeout) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  return ctx;
}

std::unique_ptr<grpc::ClientContext> DaemonClient::open_context() const {
  return std::make_unique<grpc::ClientContext>();
}

int report_rpc_error(const grpc::Status& status, const std::string& address) {
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
      status.error_message().find("connect") != std::string::npos) {
    std::fprintf(stderr, "bmserver: %s\n", no_daemon_message(address, status.error_message()).c_str());
    return kExitNoDaemon;
  }
  std::fprintf(stderr, "bmserver: %s\n", status.error_message().c_str());
  return kExitFailed;
}

}  // namespace bm::cli
