#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/hub/hub_limits.h"

namespace bm::common {

struct HttpRequest {
  std::string method = "GET";  // GET | HEAD | POST
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // POST only
  uint64_t range_start = 0;          // > 0 sends `Range: bytes=N-`
  uint64_t max_body_bytes = 0;       // a body kept in memory (no sink) larger than this ends the transfer; 0: none
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased; the last value wins
  std::string body;                            // error bodies, or the whole body when no sink was given
  bool aborted_by_sink = false;                // the sink returned false: the caller knows why
  bool body_too_large = false;                 // the body passed HttpRequest::max_body_bytes and was cut off

  std::string header(const std::string& lower_name) const;
};

struct HttpTimeouts {
  long connect_seconds = 10;
  // A transfer averaging fewer than `min_bytes_per_second` over `rate_window_seconds` is abandoned.
  long min_bytes_per_second = kMinBytesPerSecond;
  long rate_window_seconds = kRateWindowSeconds;
  // The whole transfer, connection included; 0: no bound (downloads of any size). Media fetched for a request
  // (daemon/openai/media_source.h) sets it, and min_bytes_per_second 0, so a slow server costs a known time.
  long total_seconds = 0;
};

// Called with the response head (status and headers) and each chunk of a 2xx body; returning false aborts the
// transfer.
using BodySink = std::function<bool(const HttpResponse& head, std::string_view chunk)>;

// One libcurl easy handle (so a worker thread reuses its connections). Only http and https are spoken.
// Redirects are NOT followed here: the hub session applies the hub's redirect and credential rules hop by
// hop. Proxies come from the environment
// (HTTPS_PROXY / https_proxy, NO_PROXY) through libcurl. Not thread-safe: one per thread.
class HttpClient {
 public:
  explicit HttpClient(HttpTimeouts timeouts = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Transport failures: UNAVAILABLE (connect, reset, proxy), DEADLINE_EXCEEDED (too slow), CANCELLED (cancel
  // set); a URL that is not http(s): INVALID_ARGUMENT.
  absl::StatusOr<HttpResponse> perform(const HttpRequest& request, const BodySink& sink = nullptr,
                                       const std::atomic<bool>* cancel = nullptr);

 private:
  void* curl_;  // CURL*, kept opaque so curl.h stays in one translation unit
  HttpTimeouts timeouts_;
};

// A URL as libcurl's URL API reads it (never hand-parsed: user info, IPv6, percent-encoding and odd ports
// are where hand parsers and curl disagree). Scheme and host lower-case; port always set (the scheme's
// default when the URL has none).
struct UrlParts {
  std::string scheme;
  std::string host;
  std::string port;

  std::string origin() const { return scheme + "://" + host + ":" + port; }
  bool operator==(const UrlParts& other) const = default;
};
absl::StatusOr<UrlParts> parse_url(const std::string& url);
// `reference` (a Location header: absolute, host-relative or path-relative) resolved against `base`.
absl::StatusOr<std::string> resolve_url_reference(const std::string& base, const std::string& reference);
bool is_http_scheme(const std::string& scheme);
// "scheme://host:port" of `url`, or empty when it is not a URL.
std::string url_origin(const std::string& url);
// Percent-encodes a path segment or a query value (RFC 3986 unreserved kept).
std::string url_escape(std::string_view text, bool keep_slash = false);

}  // namespace bm::common
