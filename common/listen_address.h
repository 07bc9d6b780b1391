#pragma once
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace bm::common {

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

// A control-plane address: `unix:/absolute/path` or `tcp:host:port`.
struct ListenAddress {
  std::string unix_path;  // set for unix:
  HostPort tcp;           // set for tcp:
  bool is_tcp() const { return unix_path.empty(); }
  std::string grpc_target() const;  // what grpc::ServerBuilder / grpc::CreateChannel take
};

absl::StatusOr<ListenAddress> parse_listen_address(const std::string& text);
absl::StatusOr<HostPort> parse_host_port(const std::string& text);  // host:port, [v6]:port

}  // namespace bm::common

namespace bm::common {
// Where a daemon listens by default: in user mode (XDG_RUNTIME_DIR set) $XDG_RUNTIME_DIR/bmserver/bmserverd.sock,
// else the system service's /run/bmserver/bmserverd.sock.
std::string default_control_address(bool user_mode);
}  // namespace bm::common
