#include "daemon/openai/http_server.h"

#include <atomic>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include <sys/socket.h>
#include <cerrno>

#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/beast.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace bm::daemon::openai {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

bool CaseInsensitiveLess::operator()(const std::string& a, const std::string& b) const {
  return absl::AsciiStrToLower(a) < absl::AsciiStrToLower(b);
}

std::string HttpRequest::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

namespace {

std::string status_line(int status) {
  return absl::StrCat("HTTP/1.1 ", status, " ", std::string(http::obsolete_reason(static_cast<http::status>(status))),
                      "\r\n");
}

std::string error_body(const std::string& message, const std::string& type, int code) {
  // The OpenAI error shape, for failures the server itself detects before any handler runs.
  std::string escaped;
  for (char c : message) escaped += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  return absl::StrCat("{\"error\":{\"message\":\"", escaped, "\",\"type\":\"", type,
                      "\",\"param\":null,\"code\":", code, "}}");
}

using RequestParser = http::request_parser<http::string_body>;

void configure(RequestParser& parser, const HttpServerOptions& options) {
  parser.body_limit(options.max_body_bytes);
  parser.header_limit(static_cast<uint32_t>(options.max_header_bytes));
}

HttpRequest to_request(http::request<http::string_body>&& req) {
  HttpRequest request;
  request.method = std::string(req.method_string());
  request.target = std::string(req.target());
  request.path = request.target.substr(0, request.target.find('?'));
  for (const auto& field : req) request.headers[std::string(field.name_string())] = std::string(field.value());
  request.body = std::move(req.body());
  return request;
}

// The bytes of request bodies held at once; a reservation gives its bytes back when the last holder (the
// connection while reading, then the HttpRequest) lets go.
class BodyBudget : public std::enable_shared_from_this<BodyBudget> {
 public:
  explicit BodyBudget(size_t limit) : limit_(limit) {}
  std::shared_ptr<const void> reserve(size_t bytes) {
    size_t used = used_.load();
    do {
      if (bytes > limit_ || used > limit_ - bytes) return nullptr;
    } while (!used_.compare_exchange_weak(used, used + bytes));
    return std::make_shared<const Reservation>(shared_from_this(), bytes);
  }
  size_t used() const { return used_.load(); }

 private:
  struct Reservation {
    Reservation(std::shared_ptr<BodyBudget> budget, size_t bytes) : budget(std::move(budget)), bytes(bytes) {}
    ~Reservation() { budget->used_ -= bytes; }
    std::shared_ptr<BodyBudget> budget;
    size_t bytes;
  };
  std::atomic<size_t> used_{0};
  size_t limit_;
};

class Connection;

class ConnectionExchange final : public Exchange {
 public:
  ConnectionExchange(std::shared_ptr<Connection> connection, uint64_t generation)
      : connection_(std::move(connection)), generation_(generation) {}
  void respond(HttpResponse response) override;
  void begin_stream(int status, std::string content_type,
                    std::vector<std::pair<std::string, std::string>> headers) override;
  void send(std::string bytes) override;
  void end_stream() override;
  void on_disconnect(std::function<void()> callback) override;
  bool is_disconnected() const override { return disconnected_.load(); }

  std::atomic<bool> disconnected_{false};
  std::mutex mutex_;
  std::function<void()> disconnect_callback_;  // guarded by mutex_
  bool disconnect_fired_ = false;              // guarded by mutex_
  void fire_disconnect();

 private:
  // Runs fn on the connection's strand if the connection is still on this exchange's request: a session that
  // outlives its request (a late event, an abort) must never write into the next request on the connection.
  void post_if_current(std::function<void(Connection&)> fn);

  std::shared_ptr<Connection> connection_;
  uint64_t generation_;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, const HttpServerOptions& options, const Handler& handler, HttpServerStats& stats,
             std::shared_ptr<BodyBudget> budget, std::function<void(Connection*)> on_gone)
      : stream_(std::move(socket)),
        options_(options),
        handler_(handler),
        stats_(stats),
        budget_(std::move(budget)),
        on_gone_(std::move(on_gone)) {
    stats_.open_connections++;
  }
  ~Connection() {
    stats_.open_connections--;
    on_gone_(this);
  }

  void start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_request(); });
  }

  void close_from_server() {
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->close(); });
  }

  // --- called through ConnectionExchange, always posted onto this connection's strand ---
  void post(uint64_t generation, std::function<void(Connection&)> fn) {
    net::post(stream_.get_executor(), [self = shared_from_this(), generation, fn = std::move(fn)] {
      if (self->generation_ == generation) fn(*self);
    });
  }

  void write_response(HttpResponse response) {
    if (closed_ || completed_) return;
    completed_ = true;
    std::string head = status_line(response.status);
    head += absl::StrCat("Content-Type: ", response.content_type, "\r\nContent-Length: ", response.body.size(), "\r\n");
    for (const auto& [name, value] : response.headers) head += absl::StrCat(name, ": ", value, "\r\n");
    for (const auto& [name, value] : options_.default_headers) head += absl::StrCat(name, ": ", value, "\r\n");
    if (!keep_alive_) head += "Connection: close\r\n";
    head += "\r\n";
    enqueue(head + response.body);
    finish_after_writes_ = true;
  }

  void write_stream_head(int status, const std::string& content_type,
                         const std::vector<std::pair<std::string, std::string>>& headers) {
    if (closed_ || completed_ || streaming_) return;
    streaming_ = true;
    std::string head = status_line(status);
    head +=
        absl::StrCat("Content-Type: ", content_type, "\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n");
    for (const auto& [name, value] : headers) head += absl::StrCat(name, ": ", value, "\r\n");
    for (const auto& [name, value] : options_.default_headers) head += absl::StrCat(name, ": ", value, "\r\n");
    if (!keep_alive_) head += "Connection: close\r\n";
    head += "\r\n";
    enqueue(std::move(head));
  }

  void write_chunk(std::string bytes) {
    if (closed_ || completed_ || !streaming_ || bytes.empty()) return;
    if (queued_bytes_ + bytes.size() > options_.max_pending_output_bytes) {
      // The client stopped reading: treat it as gone (the exchange's disconnect aborts the request).
      spdlog::warn("http: dropping a stream whose client left {} bytes unread", queued_bytes_);
      stats_.streams_dropped++;
      close();
      return;
    }
    char size[20];
    std::snprintf(size, sizeof size, "%zx\r\n", bytes.size());
    enqueue(std::string(size) + bytes + "\r\n");
  }

  void write_stream_end() {
    if (closed_ || completed_ || !streaming_) return;
    completed_ = true;
    enqueue("0\r\n\r\n");
    finish_after_writes_ = true;
  }

  std::weak_ptr<ConnectionExchange> exchange_;

 private:
  void read_request() {
    if (closed_) return;
    parser_.emplace();
    configure(*parser_, options_);
    stream_.expires_after(std::chrono::seconds(options_.header_timeout_seconds));
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  // The headers say how large the body will be: it is read only if the server can hold it now.
  void on_header(beast::error_code ec) {
    if (closed_) return;
    if (ec) return on_read(ec);
    size_t expected = 0;
    if (auto length = parser_->content_length()) {
      expected = static_cast<size_t>(*length);
    } else if (parser_->chunked()) {
      expected = options_.max_body_bytes;
    }
    if (expected > 0 && expected <= options_.max_body_bytes) {
      body_hold_ = budget_->reserve(expected);
      if (!body_hold_) {
        stats_.bodies_refused++;
        keep_alive_ = false;
        linger_after_close_ = true;
        completed_ = false;
        write_response({503,
                        "application/json",
                        error_body("the server holds as many request bodies as it may; retry later",
                                   "ServiceUnavailableError", 503),
                        {{"Retry-After", "1"}}});
        return;
      }
    }
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code read_ec, size_t) { self->on_read(read_ec); });
  }

  void on_read(beast::error_code ec) {
    std::shared_ptr<const void> body_hold = std::move(body_hold_);
    if (closed_) return;
    if (ec == http::error::end_of_stream || ec == net::error::eof || ec == beast::error::timeout ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted) {
      close();
      return;
    }
    if (ec) {
      keep_alive_ = false;
      bool too_large =
          ec == http::error::body_limit || ec == http::error::header_limit || ec == http::error::buffer_overflow;
      completed_ = false;
      // The client may still be sending the body we refused: read and drop it after the response, or closing
      // with unread data would reset the connection before the client reads the error.
      linger_after_close_ = true;
      write_response({too_large ? 413 : 400, "application/json",
                      error_body(too_large ? "request too large: the body may have at most " +
                                                 std::to_string(options_.max_body_bytes) + " bytes"
                                           : "malformed HTTP request: " + ec.message(),
                                 "invalid_request_error", too_large ? 413 : 400)});
      return;
    }
    stats_.requests_total++;
    http::request<http::string_body> req = parser_->release();
    keep_alive_ = req.keep_alive();
    HttpRequest request = to_request(std::move(req));
    request.body_hold = std::move(body_hold);

    completed_ = false;
    streaming_ = false;
    finish_after_writes_ = false;
    ++generation_;
    stream_.expires_never();  // a handler may take as long as generation does
    auto exchange = std::make_shared<ConnectionExchange>(shared_from_this(), generation_);
    exchange_ = exchange;
    watch_for_disconnect();
    try {
      handler_(std::move(request), exchange);
    } catch (const std::exception& e) {
      spdlog::error("http handler threw: {}", e.what());
      write_response({500, "application/json", error_body("internal error", "internal_error", 500)});
    }
  }

  // While a response is pending the client may go away; a readable socket with nothing to read means EOF.
  void watch_for_disconnect() {
    uint64_t generation = generation_;
    stream_.socket().async_wait(tcp::socket::wait_read, [self = shared_from_this(), generation](beast::error_code ec) {
      // A later exchange on this connection has its own watch; this one is stale.
      if (self->closed_ || self->completed_ || generation != self->generation_) return;
      if (ec == net::error::operation_aborted) return;  // whoever cancelled it closes the connection
      if (!ec && self->peer_has_closed()) {
        self->close();
        return;
      }
      if (ec) self->close();
      // Otherwise readable with data: a pipelined request, read after this response.
    });
  }

  // The socket reads as end-of-file (not merely readable: readiness can be spurious, and pipelined bytes are
  // data, not a disconnect).
  bool peer_has_closed() {
    char byte;
    ssize_t n = ::recv(stream_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return false;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      watch_for_disconnect();  // spurious wake-up: keep watching
      return false;
    }
    return true;
  }

  static bool buffer_has_data(const Connection& c) { return c.buffer_.size() > 0; }

  void enqueue(std::string bytes) {
    queued_bytes_ += bytes.size();
    queue_.push_back(std::move(bytes));
    if (!writing_) write_next();
  }

  void write_next() {
    if (queue_.empty()) {
      writing_ = false;
      if (finish_after_writes_) {
        finish_after_writes_ = false;
        if (keep_alive_) {
          read_request();
        } else if (linger_after_close_) {
          linger_then_close();
        } else {
          close();
        }
      }
      return;
    }
    writing_ = true;
    net::async_write(stream_, net::buffer(queue_.front()), [self = shared_from_this()](beast::error_code ec, size_t) {
      self->queued_bytes_ -= self->queue_.front().size();
      self->queue_.pop_front();  // close() leaves the in-flight buffer in place, so this is always the one written
      if (self->closed_) {
        self->queue_.clear();
        self->queued_bytes_ = 0;
        self->writing_ = false;
        return;
      }
      if (ec) {
        self->close();
        return;
      }
      self->write_next();
    });
  }

  // Half-closes, then drops what the client still sends (at most kLingerBytes, for at most kLingerSeconds) so
  // that it can finish sending and read our response, as nginx's lingering close does.
  void linger_then_close() {
    static constexpr size_t kLingerBytes = size_t{256} << 20;
    static constexpr int kLingerSeconds = 10;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) {
      close();
      return;
    }
    stream_.expires_after(std::chrono::seconds(kLingerSeconds));
    discard_.resize(64 << 10);
    stream_.async_read_some(net::buffer(discard_), [self = shared_from_this()](beast::error_code read_ec, size_t n) {
      self->lingered_bytes_ += n;
      if (read_ec || self->closed_ || self->lingered_bytes_ > kLingerBytes) {
        self->close();
        return;
      }
      self->linger_then_close();
    });
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
    // The front buffer may still be in an async_write: its completion (now failing) drops the queue.
    if (!writing_) {
      queue_.clear();
      queued_bytes_ = 0;
    }
    if (auto exchange = exchange_.lock(); exchange && !completed_) exchange->fire_disconnect();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<RequestParser> parser_;
  const HttpServerOptions& options_;
  const Handler& handler_;
  HttpServerStats& stats_;
  std::shared_ptr<BodyBudget> budget_;
  std::shared_ptr<const void> body_hold_;  // this request's body, while it is read
  std::function<void(Connection*)> on_gone_;
  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;  // in queue_, the buffer being written included
  bool writing_ = false;
  bool closed_ = false;
  bool completed_ = false;
  bool streaming_ = false;
  bool keep_alive_ = true;
  bool finish_after_writes_ = false;
  bool linger_after_close_ = false;
  std::vector<char> discard_;
  size_t lingered_bytes_ = 0;

 public:
  uint64_t generation_ = 0;  // bumped per request; exchanges of earlier requests no longer write
};

void ConnectionExchange::fire_disconnect() {
  disconnected_ = true;
  std::function<void()> callback;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (disconnect_fired_) return;
    disconnect_fired_ = true;
    callback = std::move(disconnect_callback_);
  }
  if (callback) callback();
}

void ConnectionExchange::post_if_current(std::function<void(Connection&)> fn) {
  connection_->post(generation_, std::move(fn));
}

void ConnectionExchange::respond(HttpResponse response) {
  post_if_current([response = std::move(response)](Connection& c) mutable { c.write_response(std::move(response)); });
}

void ConnectionExchange::begin_stream(int status, std::string content_type,
                                      std::vector<std::pair<std::string, std::string>> headers) {
  post_if_current([=](Connection& c) { c.write_stream_head(status, content_type, headers); });
}

void ConnectionExchange::send(std::string bytes) {
  post_if_current([bytes = std::move(bytes)](Connection& c) mutable { c.write_chunk(std::move(bytes)); });
}

void ConnectionExchange::end_stream() {
  post_if_current([](Connection& c) { c.write_stream_end(); });
}

void ConnectionExchange::on_disconnect(std::function<void()> callback) {
  bool call_now = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (disconnect_fired_) {
      call_now = true;
    } else {
      disconnect_callback_ = callback;
    }
  }
  if (call_now && callback) callback();
}

}  // namespace

absl::StatusOr<HttpRequest> parse_http_request(std::string_view bytes, const HttpServerOptions& options) {
  RequestParser parser;
  configure(parser, options);
  parser.eager(true);
  beast::error_code ec;
  size_t used = 0;
  while (used < bytes.size() && !parser.is_done()) {
    size_t n = parser.put(net::buffer(bytes.data() + used, bytes.size() - used), ec);
    if (ec == http::error::need_more) break;
    if (ec) return absl::InvalidArgumentError(absl::StrCat("malformed HTTP request: ", ec.message()));
    if (n == 0) break;
    used += n;
  }
  if (!parser.is_done()) {
    parser.put_eof(ec);
    if (ec || !parser.is_done()) return absl::InvalidArgumentError("incomplete HTTP request");
  }
  return to_request(parser.release());
}

struct HttpServer::Impl {
  HttpServerOptions options;
  Handler handler;
  HttpServerStats stats;
  net::io_context ioc;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  std::mutex connections_mutex;
  std::set<Connection*> connections;
  std::vector<std::weak_ptr<Connection>> weak_connections;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  uint16_t bound_port = 0;
  std::atomic<bool> stopped{false};

  void accept() {
    acceptor->async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec == net::error::operation_aborted || ec == net::error::bad_descriptor || stopped) return;
        // EMFILE/ENFILE/ENOBUFS persist until something closes: accepting again at once would spin and flood the
        // log. Wait a little, and log only the first failure of a run of them.
        if (stats.accept_errors++ % 1000 == 0)
          spdlog::warn("http accept failed: {} (pausing accepts for {} ms)", ec.message(), kAcceptBackoffMs);
        backoff.emplace(ioc);
        backoff->expires_after(std::chrono::milliseconds(kAcceptBackoffMs));
        backoff->async_wait([this](beast::error_code) {
          if (!stopped) accept();
        });
        return;
      }
      if (stats.open_connections.load() >= options.max_connections) {
        refuse(std::move(socket));
      } else {
        auto connection =
            std::make_shared<Connection>(std::move(socket), options, handler, stats, budget, [this](Connection* c) {
              std::lock_guard<std::mutex> lock(connections_mutex);
              connections.erase(c);
            });
        {
          std::lock_guard<std::mutex> lock(connections_mutex);
          connections.insert(connection.get());
          weak_connections.push_back(connection);
          if (weak_connections.size() > 4096) {
            std::erase_if(weak_connections, [](const std::weak_ptr<Connection>& w) { return w.expired(); });
          }
        }
        connection->start();
      }
      accept();
    });
  }

  // Over the connection limit: a short 503 written without waiting (it fits any fresh socket buffer), then close.
  void refuse(tcp::socket socket) {
    stats.connections_refused++;
    static const std::string kBody =
        error_body("too many open connections; retry later", "ServiceUnavailableError", 503);
    static const std::string kResponse =
        absl::StrCat(status_line(503), "Content-Type: application/json\r\nContent-Length: ", kBody.size(),
                     "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n", kBody);
    beast::error_code ec;
    socket.non_blocking(true, ec);
    if (!ec) socket.write_some(net::buffer(kResponse), ec);
    socket.shutdown(tcp::socket::shutdown_both, ec);
    socket.close(ec);
  }

  static constexpr int kAcceptBackoffMs = 100;
  std::shared_ptr<BodyBudget> budget;
  std::optional<net::steady_timer> backoff;
};

HttpServer::HttpServer(HttpServerOptions options, Handler handler) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
  impl_->budget = std::make_shared<BodyBudget>(impl_->options.max_inflight_body_bytes);
}

HttpServer::~HttpServer() {
  stop();
}

absl::Status HttpServer::start() {
  beast::error_code ec;
  std::string host = impl_->options.host;
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  net::ip::address address = net::ip::make_address(host, ec);
  if (ec) {
    tcp::resolver resolver(impl_->ioc);
    auto results = resolver.resolve(host, std::to_string(impl_->options.port), ec);
    if (ec || results.empty()) return absl::InvalidArgumentError(absl::StrCat("cannot resolve HTTP host '", host, "'"));
    address = results.begin()->endpoint().address();
  }
  tcp::endpoint endpoint(address, impl_->options.port);
  impl_->acceptor.emplace(impl_->ioc);
  impl_->acceptor->open(endpoint.protocol(), ec);
  if (!ec) impl_->acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor->bind(endpoint, ec);
  if (!ec) impl_->acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    impl_->acceptor.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen for HTTP on ", impl_->options.host, ":", impl_->options.port, ": ", ec.message()));
  }
  impl_->bound_port = impl_->acceptor->local_endpoint().port();
  impl_->work.emplace(net::make_work_guard(impl_->ioc));
  impl_->accept();
  for (int i = 0; i < std::max(1, impl_->options.num_threads); ++i)
    impl_->threads.emplace_back([this] {
      // A completion handler that throws (out of memory building a response, a bug) ends only what it was
      // doing; the thread goes back to serving instead of taking the process down with std::terminate.
      while (true) {
        try {
          impl_->ioc.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("http: an I/O handler threw: {}", e.what());
        } catch (...) {
          spdlog::error("http: an I/O handler threw a non-standard exception");
        }
      }
    });
  return absl::OkStatus();
}

uint16_t HttpServer::port() const {
  return impl_->bound_port;
}

const HttpServerStats& HttpServer::stats() const {
  return impl_->stats;
}

void HttpServer::stop() {
  if (impl_->stopped || impl_->threads.empty()) return;
  impl_->stopped = true;
  net::post(impl_->ioc, [this] {
    beast::error_code ec;
    if (impl_->acceptor) impl_->acceptor->close(ec);
  });
  // Locked only while collecting: dropping the last reference runs the connection's close callback, which takes
  // the same mutex.
  std::vector<std::shared_ptr<Connection>> live;
  {
    std::lock_guard<std::mutex> lock(impl_->connections_mutex);
    for (auto& weak : impl_->weak_connections)
      if (auto c = weak.lock()) live.push_back(std::move(c));
  }
  for (auto& c : live) c->close_from_server();
  live.clear();
  impl_->work.reset();
  // Connections close on their strands; pending exchanges are told the client is gone. Then the threads end.
  for (std::thread& t : impl_->threads) t.join();
  impl_->threads.clear();
}

}  // namespace bm::daemon::openai
