#pragma once
// The gRPC control plane: listens on a unix socket (0660, or 0600 in user mode) or on TCP with TLS and a bearer
// token, and serves the services it is given.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/listen_address.h"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace bm::daemon::control {

// A bearer token for TCP control must be at least this long (after surrounding whitespace is stripped).
inline constexpr size_t kMinTokenBytes = 32;

struct ControlServerOptions {
  common::ListenAddress address;
  bool user_mode = false;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string token_file;
};

class ControlServer {
 public:
  ControlServer();
  ~ControlServer();
  // Refuses to start when another daemon answers on the socket; removes a stale socket file of a dead one.
  absl::Status start(const ControlServerOptions& options, const std::vector<grpc::Service*>& services);
  // Lets in-flight RPCs finish until the grace period ends, then cancels them; removes the socket file.
  void shutdown(int grace_seconds);

 private:
  std::unique_ptr<grpc::Server> server_;
  std::string socket_path_;
};

// True when something accepts connections on the unix socket at `path`.
bool unix_socket_answers(const std::string& path);

}  // namespace bm::daemon::control
