#include "common/listen_address.h"

#include <gtest/gtest.h>

namespace bm::common {
namespace {

TEST(ListenAddressTest, ParsesUnixAndTcp) {
  absl::StatusOr<ListenAddress> unix_addr = parse_listen_address("unix:/run/bmserver/bmserverd.sock");
  ASSERT_TRUE(unix_addr.ok());
  EXPECT_FALSE(unix_addr->is_tcp());
  EXPECT_EQ(unix_addr->unix_path, "/run/bmserver/bmserverd.sock");
  EXPECT_EQ(unix_addr->grpc_target(), "unix:/run/bmserver/bmserverd.sock");
  EXPECT_EQ(parse_listen_address("unix:///tmp/a.sock")->unix_path, "/tmp/a.sock");

  absl::StatusOr<ListenAddress> tcp = parse_listen_address("tcp:0.0.0.0:7070");
  ASSERT_TRUE(tcp.ok());
  EXPECT_TRUE(tcp->is_tcp());
  EXPECT_EQ(tcp->tcp.host, "0.0.0.0");
  EXPECT_EQ(tcp->tcp.port, 7070);
  EXPECT_EQ(parse_listen_address("tcp:[::1]:7070")->tcp.host, "[::1]");
}

TEST(ListenAddressTest, RejectsBadAddressesWithTheText) {
  for (const char* bad : {"", "http://x", "unix:", "unix:relative.sock", "tcp:", "tcp:host",
                          "tcp:host:", "tcp:host:99999", "tcp:host:12ab", "tcp:::1:80", "tcp:[::1:80"}) {
    absl::StatusOr<ListenAddress> parsed = parse_listen_address(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
  }
  EXPECT_NE(parse_listen_address("ftp:x").status().message().find("ftp:x"), std::string::npos);
  EXPECT_FALSE(parse_listen_address("unix:/" + std::string(200, 'a')).ok());
}

TEST(ListenAddressTest, HostPort) {
  absl::StatusOr<HostPort> hp = parse_host_port("127.0.0.1:8080");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 8080);
  EXPECT_FALSE(parse_host_port(":80").ok());
  EXPECT_FALSE(parse_host_port("localhost").ok());
}

}  // namespace
}  // namespace bm::common
