#pragma once
#include <atomic>
#include <chrono>
#include <string>

#include "absl/status/statusor.h"
#include "common/hub/http_client.h"
#include "common/hub/hub_config.h"
#include "common/hub/hub_limits.h"

namespace bm::common {

struct RetryPolicy {
  int max_attempts = 5;
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{30000};
  std::chrono::milliseconds max_retry_after{60000};  // a longer Retry-After is clipped to this
};

// Whether the hub's credentials (HF token, ModelScope cookie) may go with a request to `url`: only to the
// configured endpoint's origin (scheme, host and port as libcurl reads them), so never over http when the
// endpoint is https, never to another port of the host, never to a redirect target elsewhere. The one exception:
// a Hugging Face mirror may redirect to the Hub itself (hub-protocols §5.1), which owns the token, over https.
bool may_send_credentials(const HubConfig& config, const std::string& url);

// HTTP to one hub with its rules: the token goes only to the hub's own origin, redirects are followed hop by
// hop over http(s) only (relative ones on the endpoint, absolute ones to mirrors and CDNs without the token),
// API answers are capped at `limits.max_api_body_bytes`, transient
// failures (transport, 408, 429, 5xx) are retried with backoff, and failures become one sentence naming the
// cause and the variable or flag that fixes it. Thread-safe: each call uses its own connection handle.
class HubSession {
 public:
  HubSession(HubConfig config, RetryPolicy retry = {}, HttpTimeouts timeouts = {}, HubLimits limits = {});

  const HubConfig& config() const { return config_; }
  const RetryPolicy& retry_policy() const { return retry_; }
  const HubLimits& limits() const { return limits_; }

  // GET an API URL into memory, with retries. `what` names the thing for error messages ("Qwen/X").
  absl::StatusOr<HttpResponse> get_api(const std::string& url, const std::string& what,
                                       const std::atomic<bool>* cancel) const;

  // One attempt at streaming a file body from `url` (redirects followed) starting at `range_start`. Returns
  // the final response (its status tells 200 from 206); non-2xx statuses come back as a response, not an
  // error.
  absl::StatusOr<HttpResponse> get_file_once(const std::string& url, uint64_t range_start, const BodySink& sink,
                                             const std::atomic<bool>* cancel) const;

  // The status for a non-2xx answer about `what`.
  absl::Status error_for(const HttpResponse& response, const std::string& what) const;
  // The status for a transport failure after the retries, naming the endpoint and its variables.
  absl::Status unreachable(const absl::Status& cause) const;

  static bool is_retryable_status(long status);
  // Transport failures worth another attempt (not a refused redirect or an oversized answer).
  static bool is_retryable_failure(const absl::Status& status);
  // The wait before attempt `attempt` (1-based retry count), honouring a Retry-After header.
  std::chrono::milliseconds backoff(int attempt, const HttpResponse* response) const;
  // Sleeps, waking early on cancel; false when cancelled.
  static bool sleep_unless_cancelled(std::chrono::milliseconds duration, const std::atomic<bool>* cancel);

 private:
  std::vector<std::string> headers_for(const std::string& url) const;
  // The next hop of a redirect, or why it is refused.
  absl::StatusOr<std::string> next_hop(const std::string& current, const HttpResponse& response) const;

  HubConfig config_;
  RetryPolicy retry_;
  HttpTimeouts timeouts_;
  HubLimits limits_;
};

}  // namespace bm::common
