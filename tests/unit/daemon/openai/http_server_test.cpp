#include "daemon/openai/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace bm::daemon::openai {
namespace {

// A blocking loopback client speaking raw bytes, so the tests see exactly what goes over the wire.
class RawClient {
 public:
  explicit RawClient(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawClient() { close_now(); }
  bool connected() const { return connected_; }
  void send(const std::string& bytes) {
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }
  // Reads until `needle` has arrived (or EOF / timeout).
  std::string read_until(const std::string& needle) {
    while (buffer_.find(needle) == std::string::npos) {
      char buf[4096];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      buffer_.append(buf, static_cast<size_t>(n));
    }
    size_t end = buffer_.find(needle);
    if (end == std::string::npos) return std::exchange(buffer_, {});
    std::string out = buffer_.substr(0, end + needle.size());
    buffer_.erase(0, end + needle.size());
    return out;
  }
  bool closed_by_peer() {
    char c;
    ssize_t n = recv(fd_, &c, 1, 0);
    return n == 0;
  }
  void close_now() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buffer_;
};

class HttpServerTest : public ::testing::Test {
 protected:
  void start(Handler handler, HttpServerOptions options = {}) {
    options.port = 0;
    options.num_threads = 2;
    server_ = std::make_unique<HttpServer>(options, std::move(handler));
    ASSERT_TRUE(server_->start().ok());
  }
  void TearDown() override {
    if (server_) server_->stop();
  }
  std::unique_ptr<HttpServer> server_;
};

Handler echo_handler() {
  return [](const HttpRequest& req, std::shared_ptr<Exchange> ex) {
    HttpResponse r;
    r.content_type = "text/plain";
    r.body = req.method + " " + req.path + " " + req.body + " " + req.header("X-Test");
    ex->respond(std::move(r));
  };
}

TEST_F(HttpServerTest, AnswersAndKeepsTheConnectionAlive) {
  start(echo_handler());
  RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  c.send("POST /a?x=1 HTTP/1.1\r\nHost: h\r\nX-Test: yes\r\nContent-Length: 3\r\n\r\nabc");
  std::string first = c.read_until("POST /a abc yes");
  EXPECT_NE(first.find("HTTP/1.1 200 OK"), std::string::npos) << first;
  EXPECT_NE(first.find("Content-Length: 15"), std::string::npos) << first;
  c.send("GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_NE(c.read_until("GET /b  ").find("200 OK"), std::string::npos);
}

TEST_F(HttpServerTest, PipelinedRequestsAnswerInOrder) {
  start(echo_handler());
  RawClient c(server_->port());
  c.send("GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\n\r\n");
  std::string all = c.read_until("GET /3  ");
  size_t p1 = all.find("GET /1"), p2 = all.find("GET /2"), p3 = all.find("GET /3");
  ASSERT_NE(p1, std::string::npos);
  ASSERT_NE(p2, std::string::npos);
  EXPECT_LT(p1, p2);
  EXPECT_LT(p2, p3);
}

TEST_F(HttpServerTest, OversizedBodyGets413AndClose) {
  HttpServerOptions options;
  options.max_body_bytes = 100;
  start(echo_handler(), options);
  RawClient c(server_->port());
  c.send("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + std::string(1000, 'a'));
  std::string response = c.read_until("}}");
  EXPECT_NE(response.find("413"), std::string::npos) << response;
  EXPECT_NE(response.find("\"error\""), std::string::npos);
}

TEST_F(HttpServerTest, MalformedRequestGets400) {
  start(echo_handler());
  RawClient c(server_->port());
  c.send("THIS IS NOT HTTP\r\n\r\n");
  std::string response = c.read_until("}}");
  EXPECT_NE(response.find("400"), std::string::npos) << response;
}

TEST_F(HttpServerTest, SlowHeadersAreDropped) {
  HttpServerOptions options;
  options.header_timeout_seconds = 1;
  start(echo_handler(), options);
  RawClient c(server_->port());
  c.send("GET / HTTP/1.1\r\nHost: h\r\n");  // never finishes its headers
  EXPECT_TRUE(c.closed_by_peer());
  RawClient d(server_->port());  // the server still serves others
  d.send("GET /ok HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_NE(d.read_until("GET /ok  ").find("200"), std::string::npos);
}

TEST_F(HttpServerTest, StreamsChunksThenKeepsAlive) {
  start([](const HttpRequest& req, std::shared_ptr<Exchange> ex) {
    if (req.path == "/plain") {
      ex->respond({200, "text/plain", "after", {}});
      return;
    }
    ex->begin_stream(200, "text/event-stream");
    std::thread([ex] {
      for (int i = 0; i < 3; ++i) ex->send("data: " + std::to_string(i) + "\n\n");
      ex->send("data: [DONE]\n\n");
      ex->end_stream();
    }).detach();
  });
  RawClient c(server_->port());
  c.send("POST /stream HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
  std::string body = c.read_until("0\r\n\r\n");
  EXPECT_NE(body.find("Transfer-Encoding: chunked"), std::string::npos) << body;
  EXPECT_NE(body.find("text/event-stream"), std::string::npos);
  EXPECT_NE(body.find("data: 0\n\n"), std::string::npos);
  EXPECT_NE(body.find("data: [DONE]"), std::string::npos);
  c.send("GET /plain HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_NE(c.read_until("after").find("200"), std::string::npos);
}

TEST_F(HttpServerTest, ClientDisconnectIsReportedWhilePending) {
  std::atomic<bool> disconnected{false};
  std::shared_ptr<Exchange> held;
  std::atomic<bool> got_request{false};
  start([&](const HttpRequest&, std::shared_ptr<Exchange> ex) {
    ex->on_disconnect([&] { disconnected = true; });
    held = ex;  // never answered: like a long generation
    got_request = true;
  });
  {
    RawClient c(server_->port());
    c.send("POST /slow HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    for (int i = 0; i < 200 && !got_request; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (int i = 0; i < 300 && !disconnected; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(disconnected.load());
  EXPECT_TRUE(held->is_disconnected());
  held->respond({200, "text/plain", "too late", {}});  // harmless after the client left
  held.reset();
}

TEST_F(HttpServerTest, ConnectionsAreReleased) {
  start(echo_handler());
  for (int i = 0; i < 20; ++i) {
    RawClient c(server_->port());
    c.send("GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    c.read_until("GET /x  ");
  }
  for (int i = 0; i < 200 && server_->stats().open_connections.load() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server_->stats().open_connections.load(), 0);
  EXPECT_EQ(server_->stats().requests_total.load(), 20);
}

TEST_F(HttpServerTest, ConnectionsOverTheLimitGet503AndTheOthersStayServed) {
  HttpServerOptions options;
  options.max_connections = 3;
  start(echo_handler(), options);
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<RawClient>(server_->port()));
    held.back()->send("GET /held HTTP/1.1\r\nHost: h\r\n\r\n");
    held.back()->read_until("GET /held  ");  // the connection is open and counted
  }
  RawClient extra(server_->port());
  ASSERT_TRUE(extra.connected());  // the kernel accepts; the server answers and closes
  std::string refused = extra.read_until("}}");
  EXPECT_NE(refused.find("HTTP/1.1 503"), std::string::npos) << refused;
  EXPECT_NE(refused.find("Retry-After: 1"), std::string::npos) << refused;
  EXPECT_NE(refused.find("too many open connections"), std::string::npos) << refused;
  EXPECT_EQ(server_->stats().connections_refused.load(), 1);
  held[0]->send("GET /again HTTP/1.1\r\nHost: h\r\n\r\n");  // the held ones are unaffected
  EXPECT_NE(held[0]->read_until("GET /again  ").find("200"), std::string::npos);
  held.clear();
  for (int i = 0; i < 200 && server_->stats().open_connections.load() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  RawClient later(server_->port());  // room again once they closed
  later.send("GET /later HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_NE(later.read_until("GET /later  ").find("200"), std::string::npos);
}

TEST_F(HttpServerTest, AStreamWhoseClientStopsReadingIsDroppedAndReportedAsADisconnect) {
  HttpServerOptions options;
  options.max_pending_output_bytes = 256 << 10;
  std::atomic<bool> disconnected{false};
  std::atomic<int> chunks_sent{0};
  std::thread producer;
  start(
      [&](const HttpRequest&, std::shared_ptr<Exchange> ex) {
        ex->on_disconnect([&] { disconnected = true; });
        ex->begin_stream(200, "text/event-stream");
        producer = std::thread([ex, &disconnected, &chunks_sent] {
          // Up to 256 MiB if nothing stops it: a generation the client never reads.
          const std::string chunk(64 << 10, 'x');
          for (int i = 0; i < 4096 && !disconnected; ++i) {
            ex->send(chunk);
            chunks_sent++;
          }
        });
      },
      options);
  RawClient c(server_->port());
  c.send("POST /stream HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");  // and never reads
  for (int i = 0; i < 1000 && !disconnected; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  producer.join();
  EXPECT_TRUE(disconnected.load());
  EXPECT_LT(chunks_sent.load(), 4096);
  EXPECT_EQ(server_->stats().streams_dropped.load(), 1);
}

TEST(ParseHttpRequestTest, ParsesAsAConnectionDoes) {
  HttpServerOptions options;
  auto plain = parse_http_request("POST /v1/x?y=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", options);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->path, "/v1/x");
  EXPECT_EQ(plain->body, "abc");
  EXPECT_EQ(plain->header("host"), "h");
  auto chunked = parse_http_request(
      "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n", options);
  ASSERT_TRUE(chunked.ok()) << chunked.status();
  EXPECT_EQ(chunked->body, "abc");
  EXPECT_FALSE(parse_http_request("GARBAGE\r\n\r\n", options).ok());
  EXPECT_FALSE(parse_http_request("POST /c HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", options).ok());
  options.max_body_bytes = 2;
  EXPECT_FALSE(parse_http_request("POST /c HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", options).ok());
}

TEST_F(HttpServerTest, BodiesHeldAtOnceAreBoundedAcrossConnections) {
  HttpServerOptions options;
  options.max_inflight_body_bytes = 1000;
  std::mutex mutex;
  std::vector<std::pair<HttpRequest, std::shared_ptr<Exchange>>> held;  // like requests waiting for a worker
  start(
      [&](HttpRequest req, std::shared_ptr<Exchange> ex) {
        std::lock_guard<std::mutex> lock(mutex);
        held.emplace_back(std::move(req), std::move(ex));
      },
      options);
  auto wait_until_held = [&] {
    for (int i = 0; i < 300; ++i) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (!held.empty()) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  };
  const std::string body(600, 'a');
  RawClient first(server_->port());
  first.send("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 600\r\n\r\n" + body);
  wait_until_held();
  RawClient second(server_->port());  // 600 more would pass 1000 while the first is held
  second.send("POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 600\r\n\r\n" + body);
  std::string refused = second.read_until("}}");
  EXPECT_NE(refused.find("HTTP/1.1 503"), std::string::npos) << refused;
  EXPECT_NE(refused.find("Retry-After: 1"), std::string::npos) << refused;
  EXPECT_EQ(server_->stats().bodies_refused.load(), 1);
  {
    std::lock_guard<std::mutex> lock(mutex);
    ASSERT_EQ(held.size(), 1u);
    held.front().second->respond({200, "text/plain", "done", {}});
    held.clear();  // the request, and with it its body's reservation, is gone
  }
  EXPECT_NE(first.read_until("done").find("200"), std::string::npos);
  RawClient third(server_->port());
  third.send("POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 600\r\n\r\n" + body);
  wait_until_held();
  std::lock_guard<std::mutex> lock(mutex);
  EXPECT_EQ(held.size(), 1u);
  if (!held.empty()) held.front().second->respond({200, "text/plain", "ok", {}});
  held.clear();
}

TEST_F(HttpServerTest, AcceptFailuresBackOffInsteadOfSpinning) {
  start(echo_handler());
  // A client socket made while descriptors are still available; then the process may open no more, so the
  // server's accept() fails with EMFILE for as long as the limit holds.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  int open_fds = 0;
  for (int probe = 0; probe < 65536; ++probe)
    if (fcntl(probe, F_GETFD) != -1) open_fds = probe + 1;
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(open_fds);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
  std::vector<int> fillers;  // the free numbers below the limit, taken
  for (int f; (f = ::open("/dev/null", O_RDONLY)) >= 0;) fillers.push_back(f);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server_->port());
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);  // queued by the kernel
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const int64_t errors = server_->stats().accept_errors.load();
  for (int f : fillers) ::close(f);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  // A retry every 100 ms: about ten in the second, where a spinning accept loop fails thousands of times.
  EXPECT_GE(errors, 1);
  EXPECT_LE(errors, 40);
  const std::string request = "GET /later HTTP/1.1\r\nHost: h\r\n\r\n";
  ASSERT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string got;
  char buf[4096];
  while (got.find("GET /later  ") == std::string::npos) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  EXPECT_NE(got.find("200"), std::string::npos) << got;  // served once descriptors are back
}

}  // namespace
}  // namespace bm::daemon::openai
