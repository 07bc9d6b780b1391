#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace bm::common {

struct HttpRequest {
  std::string method = "GET";  // GET | HEAD | POST
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // POST only
  uint64_t range_start = 0;          // > 0 sends `Range: bytes=N-`
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased; the last value wins
  std::string body;                            // error bodies, or the whole body when no sink was given
  bool aborted_by_sink = false;                // the sink returned false: the caller knows why

  std::string header(const std::string& lower_name) const;
};

struct HttpTimeouts {
  long connect_seconds = 10;
  long stall_seconds = 30;  // a transfer slower than 1 byte/s for this long is abandoned
};

// Called with the status and each chunk of a 2xx body; returning false aborts the transfer.
using BodySink = std::function<bool(long status, std::string_view chunk)>;

// One libcurl easy handle (so a worker thread reuses its connections). Redirects are NOT followed here: the
// hub session applies the hub's redirect and credential rules hop by hop. Proxies come from the environment
// (HTTPS_PROXY / https_proxy, NO_PROXY) through libcurl. Not thread-safe: one per thread.
class HttpClient {
 public:
  explicit HttpClient(HttpTimeouts timeouts = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Transport failures: UNAVAILABLE (connect, reset, proxy), DEADLINE_EXCEEDED (stall), CANCELLED (cancel
  // set).
  absl::StatusOr<HttpResponse> perform(const HttpRequest& request, const BodySink& sink = nullptr,
                                       const std::atomic<bool>* cancel = nullptr);

 private:
  void* curl_;  // CURL*, kept opaque so curl.h stays in one translation unit
  HttpTimeouts timeouts_;
};

// Splits "scheme://host[:port]/path?q" into the origin ("scheme://host:port") and the rest.
std::string url_origin(const std::string& url);
std::string url_host(const std::string& url);
// Percent-encodes a path segment or a query value (RFC 3986 unreserved kept).
std::string url_escape(std::string_view text, bool keep_slash = false);

}  // namespace bm::common
