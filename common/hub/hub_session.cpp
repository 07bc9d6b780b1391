#include "common/hub/hub_session.h"

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace bm::common {
namespace {

bool is_redirect(long status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

}  // namespace

bool may_send_credentials(const HubConfig& config, const std::string& url) {
  absl::StatusOr<UrlParts> target = parse_url(url);
  absl::StatusOr<UrlParts> endpoint = parse_url(config.endpoint);
  if (!target.ok() || !endpoint.ok() || !is_http_scheme(target->scheme) || target->host.empty()) return false;
  // Only the configured endpoint's own scheme, host and port: a mirror that redirects elsewhere (even to
  // huggingface.co) does not get the token the user gave for the endpoint.
  return *target == *endpoint;
}

HubSession::HubSession(HubConfig config, RetryPolicy retry, HttpTimeouts timeouts, HubLimits limits)
    : config_(std::move(config)), retry_(retry), timeouts_(timeouts), limits_(limits) {}

absl::StatusOr<std::string> HubSession::next_hop(const std::string& current, const HttpResponse& response) const {
  std::string location = response.header("location");
  absl::StatusOr<std::string> next = resolve_url_reference(current, location);
  absl::StatusOr<UrlParts> parts = next.ok() ? parse_url(*next) : next.status();
  if (!parts.ok() || !is_http_scheme(parts->scheme) || parts->host.empty()) {
    return absl::DataLossError(absl::StrCat(config_.endpoint, " redirected ", current, " to \"",
                                            absl::CHexEscape(location.substr(0, 200)),
                                            "\"; only http and https redirects are followed"));
  }
  return *next;
}

std::vector<std::string> HubSession::headers_for(const std::string& url) const {
  std::vector<std::string> headers;
  if (config_.token.empty() || !may_send_credentials(config_, url)) return headers;
  switch (config_.kind) {
    case HubKind::kHuggingFace:
      headers.push_back("Authorization: Bearer " + config_.token);
      break;
    case HubKind::kModelScope:
      headers.push_back("Cookie: m_session_id=" + config_.token);
      break;
  }
  return headers;
}

bool HubSession::is_retryable_failure(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status);
}

bool HubSession::is_retryable_status(long status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

std::chrono::milliseconds HubSession::backoff(int attempt, const HttpResponse* response) const {
  if (response != nullptr) {
    int64_t seconds = 0;
    if (absl::SimpleAtoi(response->header("retry-after"), &seconds) && seconds >= 0) {
      return std::min<std::chrono::milliseconds>(std::chrono::seconds(seconds), retry_.max_retry_after);
    }
  }
  auto wait = retry_.initial_backoff * (1 << std::min(attempt - 1, 10));
  return std::min<std::chrono::milliseconds>(wait, retry_.max_backoff);
}

bool HubSession::sleep_unless_cancelled(std::chrono::milliseconds duration, const std::atomic<bool>* cancel) {
  auto deadline = std::chrono::steady_clock::now() + duration;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cancel != nullptr && cancel->load()) return false;
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
        std::chrono::milliseconds(50),
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()) +
            std::chrono::milliseconds(1)));
  }
  return cancel == nullptr || !cancel->load();
}

absl::StatusOr<HttpResponse> HubSession::get_api(const std::string& url, const std::string& what,
                                                 const std::atomic<bool>* cancel) const {
  HttpClient client(timeouts_);
  absl::Status last_error;
  for (int attempt = 1;; ++attempt) {
    std::string current = url;
    absl::StatusOr<HttpResponse> response;
    for (int hop = 0;; ++hop) {
      if (hop > kMaxRedirects) {
        return absl::DataLossError(absl::StrCat(config_.endpoint, " redirected the request for ", what, " more than ",
                                                kMaxRedirects, " times"));
      }
      HttpRequest request;
      request.url = current;
      request.headers = headers_for(current);
      request.headers.push_back("Accept: application/json");
      request.max_body_bytes = limits_.max_api_body_bytes;
      response = client.perform(request, nullptr, cancel);
      if (response.ok() && response->body_too_large) {
        return absl::DataLossError(absl::StrCat(config_.endpoint, "'s answer about ", what, " is larger than ",
                                                limits_.max_api_body_bytes, " bytes (the cap on hub API answers); is ",
                                                config_.endpoint_variable, " a hub?"));
      }
      if (!response.ok() || !is_redirect(response->status) || response->header("location").empty()) break;
      absl::StatusOr<std::string> next = next_hop(current, *response);
      if (!next.ok()) return next.status();
      current = *next;
    }
    if (response.ok() && response->status >= 200 && response->status < 300) return response;
    if (!response.ok() && absl::IsCancelled(response.status())) return response.status();
    bool retryable = response.ok() ? is_retryable_status(response->status) : is_retryable_failure(response.status());
    if (!response.ok() && !retryable) return response.status();
    last_error = response.ok() ? error_for(*response, what) : unreachable(response.status());
    if (!retryable || attempt >= retry_.max_attempts) return last_error;
    if (!sleep_unless_cancelled(backoff(attempt, response.ok() ? &*response : nullptr), cancel)) {
      return absl::CancelledError("the download was cancelled");
    }
  }
}

absl::StatusOr<HttpResponse> HubSession::get_file_once(const std::string& url, uint64_t range_start,
                                                       const BodySink& sink, const std::atomic<bool>* cancel) const {
  HttpClient client(timeouts_);
  std::string current = url;
  for (int hop = 0; hop <= kMaxRedirects; ++hop) {
    HttpRequest request;
    request.url = current;
    request.headers = headers_for(current);
    request.range_start = range_start;
    absl::StatusOr<HttpResponse> response = client.perform(request, sink, cancel);
    if (!response.ok() || !is_redirect(response->status) || response->header("location").empty()) return response;
    absl::StatusOr<std::string> next = next_hop(current, *response);
    if (!next.ok()) return next.status();
    current = *next;
  }
  return absl::DataLossError(
      absl::StrCat(config_.endpoint, " redirected ", url, " more than ", kMaxRedirects, " times"));
}

absl::Status HubSession::error_for(const HttpResponse& response, const std::string& what) const {
  std::string code = response.header("x-error-code");
  std::string detail = response.header("x-error-message");
  std::string suffix = detail.empty() ? std::string() : absl::StrCat(" (the hub says: ", detail, ")");
  const std::string& ep = config_.endpoint;
  switch (response.status) {
    case 401:
    case 403:
      if (code == "GatedRepo" || response.status == 403) {
        return absl::PermissionDeniedError(absl::StrCat(what, " on ", ep, " is gated or forbidden (HTTP ",
                                                        response.status,
                                                        "): accept its terms on the hub's web page and set ",
                                                        config_.token_variable, " to a token of that account", suffix));
      }
      return absl::UnauthenticatedError(absl::StrCat(
          ep, " refused the request for ", what, " (HTTP 401): ", config_.token.empty() ? "set " : "check ",
          config_.token_variable, config_.token.empty() ? " to a valid token" : " (the token was rejected)", suffix));
    case 404:
      if (code == "RevisionNotFound") {
        return absl::NotFoundError(absl::StrCat("that revision of ", what, " does not exist on ", ep, suffix));
      }
      if (code == "EntryNotFound") {
        return absl::NotFoundError(absl::StrCat(what, " does not exist on ", ep, suffix));
      }
      return absl::NotFoundError(absl::StrCat(what, " was not found on ", ep, " (check the name, set ",
                                              config_.token_variable, " if it is private, or try ",
                                              config_.other_hub_flag, ")", suffix));
    case 429:
      return absl::UnavailableError(
          absl::StrCat(ep, " is rate-limiting requests for ", what, " (HTTP 429); try again later", suffix));
    default:
      break;
  }
  if (response.status >= 500) {
    return absl::UnavailableError(absl::StrCat(ep, " failed for ", what, " (HTTP ", response.status,
                                               "); try again later, set ", config_.endpoint_variable,
                                               " to a mirror, or try ", config_.other_hub_flag, suffix));
  }
  return absl::UnknownError(absl::StrCat(ep, " answered HTTP ", response.status, " for ", what, suffix));
}

absl::Status HubSession::unreachable(const absl::Status& cause) const {
  if (absl::IsCancelled(cause)) return cause;
  return absl::UnavailableError(absl::StrCat(hub_name(config_.kind), " at ", config_.endpoint, " is unreachable (",
                                             cause.message(), "); check the network, set ", config_.endpoint_variable,
                                             " to a reachable mirror, HTTPS_PROXY / NO_PROXY for a proxy, or try ",
                                             config_.other_hub_flag));
}

}  // namespace bm::common
