#include "common/listen_address.h"

#include <charconv>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace bm::common {

absl::StatusOr<HostPort> parse_host_port(const std::string& text) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not host:port"));
  std::string host = text.substr(0, colon);
  if (host.front() == '[') {
    if (host.back() != ']')
      return absl::InvalidArgumentError(absl::StrCat("'", text, "' has an unclosed [ in its host"));
  } else if (host.find(':') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "': write IPv6 hosts in brackets, [::1]:port"));
  }
  std::string port_text = text.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535)
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' has an invalid port '", port_text, "'"));
  return HostPort{host, static_cast<uint16_t>(port)};
}

absl::StatusOr<ListenAddress> parse_listen_address(const std::string& text) {
  ListenAddress addr;
  if (absl::StartsWith(text, "unix:")) {
    addr.unix_path = text.substr(5);
    if (absl::StartsWith(addr.unix_path, "//")) addr.unix_path = addr.unix_path.substr(2);  // unix:///path
    if (addr.unix_path.empty() || addr.unix_path.front() != '/')
      return absl::InvalidArgumentError(
          absl::StrCat("listen address '", text, "': a unix socket path must be absolute"));
    if (addr.unix_path.size() > 107)
      return absl::InvalidArgumentError(
          absl::StrCat("listen address '", text, "': the socket path is longer than 107 bytes"));
    return addr;
  }
  if (absl::StartsWith(text, "tcp:")) {
    absl::StatusOr<HostPort> hp = parse_host_port(text.substr(4));
    if (!hp.ok())
      return absl::InvalidArgumentError(absl::StrCat("listen address '", text, "': ", hp.status().message()));
    addr.tcp = *hp;
    return addr;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("listen address '", text,
                   "' must start with unix: (unix:/run/bmserver/bmserverd.sock) or tcp: (tcp:0.0.0.0:7070)"));
}

std::string ListenAddress::grpc_target() const {
  if (!is_tcp()) return "unix:" + unix_path;
  return tcp.host + ":" + std::to_string(tcp.port);
}

}  // namespace bm::common

namespace bm::common {
std::string default_control_address(bool user_mode) {
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  if (user_mode && runtime != nullptr && *runtime != '\0')
    return std::string("unix:") + runtime + "/bmserver/bmserverd.sock";
  return "unix:/run/bmserver/bmserverd.sock";
}
}  // namespace bm::common
