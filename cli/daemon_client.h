#pragma once
// The CLI's connection to bmserverd: picks the address (--daemon, BMSERVER_DAEMON, else the user-mode socket,
// else the system one), checks that a daemon answers, and makes per-call contexts carrying the token.
#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace grpc {
class Channel;
class ClientContext;
class Status;
}  // namespace grpc

namespace bm::cli {

class DaemonClient {
 public:
  // address: explicit --daemon value, or empty for the default search.
  static absl::StatusOr<DaemonClient> connect(const std::string& address);
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const std::string& address() const { return address_; }
  std::unique_ptr<grpc::ClientContext> context(std::chrono::seconds timeout = std::chrono::seconds(60)) const;
  // For streaming calls that run as long as they need.
  std::unique_ptr<grpc::ClientContext> open_context() const;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::string address_;
};

// The one line printed when no daemon answers (exit code kExitNoDaemon).
std::string no_daemon_message(const std::string& address, const std::string& detail);

// Prints "bmserver: <message>" for a failed RPC and returns the exit code for it.
int report_rpc_error(const grpc::Status& status, const std::string& address);

}  // namespace bm::cli
