#pragma once
// Transport-neutral HTTP types: handlers see these, never Boost.Beast (which stays in http_server.cpp).
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace bm::daemon::openai {

struct CaseInsensitiveLess {
  bool operator()(const std::string& a, const std::string& b) const;
};

struct HttpRequest {
  std::string method;  // "GET", "POST", "OPTIONS", ...
  std::string target;  // path and query, as sent
  std::string path;    // target without the query
  std::map<std::string, std::string, CaseInsensitiveLess> headers;
  std::string body;
  std::shared_ptr<const void> body_hold;  // the server's count of bodies held in memory: released with the request
  std::string header(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// One request/response exchange on a connection. Every method may be called from any thread; the server
// serialises them onto the connection. Exactly one of respond() or begin_stream()…end_stream() completes it.
class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual void respond(HttpResponse response) = 0;
  // Starts a chunked response (SSE: content type text/event-stream); send() queues bytes, end_stream() ends it.
  virtual void begin_stream(int status, std::string content_type,
                            std::vector<std::pair<std::string, std::string>> headers = {}) = 0;
  virtual void send(std::string bytes) = 0;
  virtual void end_stream() = 0;
  // Called once, on a server thread, if the client goes away before the exchange completes.
  virtual void on_disconnect(std::function<void()> callback) = 0;
  virtual bool is_disconnected() const = 0;
};

// Takes the request by value: a handler may hand it (and its body, up to the body limit) to another thread.
using Handler = std::function<void(HttpRequest, std::shared_ptr<Exchange>)>;

}  // namespace bm::daemon::openai
