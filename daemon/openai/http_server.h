#pragma once
// HTTP/1.1 server over Boost.Beast: keep-alive and pipelining, limits on headers, body and header time, chunked
// streaming, and disconnect detection while a response is pending. All Beast code lives in http_server.cpp.
#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/openai/http_types.h"

namespace bm::daemon::openai {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  int num_threads = 4;
  size_t max_body_bytes = 32 << 20;
  size_t max_header_bytes = 64 << 10;
  int header_timeout_seconds = 30;  // slow or silent clients are dropped
  // Connections open at once; one more is answered 503 and closed, so a flood of idle sockets cannot take every
  // file descriptor the daemon has (the model files, the control socket and the engine's need them too).
  int max_connections = 1024;
  // Bytes of a streamed response queued for a client that does not read them; past this the stream is dropped
  // and its request aborted, as on a disconnect, so a stalled reader cannot make the daemon buffer a whole
  // generation.
  size_t max_pending_output_bytes = 4 << 20;
  // Request bodies held in memory at once over all connections (being read, queued for a worker, or being
  // prepared): without it, max_connections × max_body_bytes (32 GiB by default) could be asked for. A request
  // whose Content-Length does not fit now gets 503 with Retry-After; a chunked body counts max_body_bytes.
  size_t max_inflight_body_bytes = size_t{256} << 20;
  std::vector<std::pair<std::string, std::string>> default_headers;  // added to every response
};

struct HttpServerStats {
  std::atomic<int64_t> open_connections{0};
  std::atomic<int64_t> requests_total{0};
  std::atomic<int64_t> connections_refused{0};  // over max_connections
  std::atomic<int64_t> streams_dropped{0};      // over max_pending_output_bytes
  std::atomic<int64_t> accept_errors{0};
  std::atomic<int64_t> bodies_refused{0};  // over max_inflight_body_bytes
};

// Parses one whole request from raw bytes with the parser and limits a connection uses (for tests and the HTTP
// fuzzer, which cannot open sockets per input). A request the connection would refuse is an error here.
absl::StatusOr<HttpRequest> parse_http_request(std::string_view bytes, const HttpServerOptions& options);

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, Handler handler);
  ~HttpServer();
  absl::Status start();
  uint16_t port() const;  // the bound port (useful with port 0)
  // Stops accepting, closes every connection (pending exchanges see a disconnect), joins the threads.
  void stop();
  const HttpServerStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bm::daemon::openai
