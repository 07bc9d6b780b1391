#include "common/hub/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace bm::common {
namespace {

constexpr size_t kMaxErrorBody = 64 * 1024;

void global_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  CURL* curl = nullptr;
  const BodySink* sink = nullptr;
  uint64_t max_body_bytes = 0;
  const std::atomic<bool>* cancel = nullptr;
  HttpResponse response;
  bool deliver_to_sink = false;
  bool status_known = false;
};

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  absl::string_view line(data, size * count);
  if (line.rfind("HTTP/", 0) == 0) transfer->response.headers.clear();  // a new response (e.g. after 100)
  size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    transfer->response.headers[name] = value;
  }
  return size * count;
}

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  size_t bytes = size * count;
  if (!transfer->status_known) {
    curl_easy_getinfo(transfer->curl, CURLINFO_RESPONSE_CODE, &transfer->response.status);
    transfer->status_known = true;
    long status = transfer->response.status;
    transfer->deliver_to_sink = transfer->sink != nullptr && *transfer->sink && status >= 200 && status < 300;
  }
  if (transfer->deliver_to_sink) {
    if (!(*transfer->sink)(transfer->response, std::string_view(data, bytes))) {
      transfer->response.aborted_by_sink = true;
      return 0;
    }
    return bytes;
  }
  std::string& body = transfer->response.body;
  if (transfer->sink == nullptr || !*transfer->sink) {
    if (transfer->max_body_bytes > 0 && body.size() + bytes > transfer->max_body_bytes) {
      transfer->response.body_too_large = true;
      return 0;
    }
    body.append(data, bytes);
  } else if (body.size() < kMaxErrorBody) {
    body.append(data, std::min(bytes, kMaxErrorBody - body.size()));
  }
  return bytes;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* transfer = static_cast<Transfer*>(user);
  return transfer->cancel != nullptr && transfer->cancel->load() ? 1 : 0;
}

bool proxy_configured() {
  for (const char* name : {"https_proxy", "HTTPS_PROXY", "http_proxy", "all_proxy", "ALL_PROXY"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && *value != '\0') return true;
  }
  return false;
}

absl::Status transport_error(CURLcode code, const char* detail, const std::string& url, long status,
                             const HttpTimeouts& timeouts) {
  std::string what = *detail != '\0' ? detail : curl_easy_strerror(code);
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      if (status == 0)
        return absl::DeadlineExceededError(absl::StrCat("connecting to ", url_origin(url), " timed out"));
      if (timeouts.min_bytes_per_second == 0)
        return absl::DeadlineExceededError(
            absl::StrCat("the transfer from ", url_origin(url), " took longer than ", timeouts.total_seconds, " s"));
      return absl::DeadlineExceededError(absl::StrCat("the transfer from ", url, " ran slower than ",
                                                      timeouts.min_bytes_per_second, " bytes/s for ",
                                                      timeouts.rate_window_seconds, " s"));
    case CURLE_UNSUPPORTED_PROTOCOL:
      return absl::InvalidArgumentError(absl::StrCat("refusing ", url, ": only http and https are spoken"));
    case CURLE_COULDNT_RESOLVE_PROXY:
      return absl::UnavailableError(
          absl::StrCat("cannot resolve the proxy (", what, "); check HTTPS_PROXY / NO_PROXY"));
    default:
      break;
  }
  std::string hint;
  if (proxy_configured() && (code == CURLE_COULDNT_CONNECT || code == CURLE_RECV_ERROR || code == CURLE_SEND_ERROR)) {
    hint = " (a proxy is set: check HTTPS_PROXY / NO_PROXY)";
  }
  return absl::UnavailableError(absl::StrCat("cannot reach ", url_origin(url), ": ", what, hint));
}

}  // namespace

std::string HttpResponse::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

HttpClient::HttpClient(HttpTimeouts timeouts) : timeouts_(timeouts) {
  global_init_once();
  curl_ = curl_easy_init();
  BM_CHECK(curl_ != nullptr);
}

HttpClient::~HttpClient() {
  curl_easy_cleanup(static_cast<CURL*>(curl_));
}

absl::StatusOr<HttpResponse> HttpClient::perform(const HttpRequest& request, const BodySink& sink,
                                                 const std::atomic<bool>* cancel) {
  CURL* curl = static_cast<CURL*>(curl_);
  curl_easy_reset(curl);
  Transfer transfer;
  transfer.curl = curl;
  transfer.sink = &sink;
  transfer.max_body_bytes = request.max_body_bytes;
  transfer.cancel = cancel;
  char error_buffer[CURL_ERROR_SIZE] = {0};

  curl_slist* headers = nullptr;
  for (const std::string& header : request.headers) headers = curl_slist_append(headers, header.c_str());
  // The size a hub reports is the size of the identity encoding; never let a gzip body through.
  headers = curl_slist_append(headers, "Accept-Encoding: identity");
  std::string range;
  if (request.range_start > 0) {
    range = absl::StrCat(request.range_start, "-");
  }

  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  // Whatever a hub says, nothing but http(s) is ever fetched (no file://, gopher://, …).
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, timeouts_.connect_seconds);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, timeouts_.min_bytes_per_second);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, timeouts_.rate_window_seconds);
  if (timeouts_.total_seconds > 0) curl_easy_setopt(curl, CURLOPT_TIMEOUT, timeouts_.total_seconds);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "bmserver/0.1 (libcurl)");
  curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
  if (!range.empty()) curl_easy_setopt(curl, CURLOPT_RANGE, range.c_str());
  if (request.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (request.method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(request.body.size()));
  }

  CURLcode code = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &transfer.response.status);
  if (transfer.response.aborted_by_sink || transfer.response.body_too_large) return transfer.response;
  if (code == CURLE_ABORTED_BY_CALLBACK && cancel != nullptr && cancel->load()) {
    return absl::CancelledError("the download was cancelled");
  }
  if (code != CURLE_OK) return transport_error(code, error_buffer, request.url, transfer.response.status, timeouts_);
  return transfer.response;
}

namespace {

struct UrlHandle {
  CURLU* url = curl_url();
  ~UrlHandle() { curl_url_cleanup(url); }

  std::string get(CURLUPart part, unsigned flags = 0) const {
    char* text = nullptr;
    if (curl_url_get(url, part, &text, flags) != CURLUE_OK || text == nullptr) return std::string();
    std::string out(text);
    curl_free(text);
    return out;
  }
};

absl::Status bad_url(const std::string& url, CURLUcode code) {
  return absl::InvalidArgumentError(
      absl::StrCat("\"", absl::CHexEscape(url.substr(0, 200)), "\" is not a URL (", curl_url_strerror(code), ")"));
}

}  // namespace

bool is_http_scheme(const std::string& scheme) {
  return scheme == "http" || scheme == "https";
}

absl::StatusOr<UrlParts> parse_url(const std::string& url) {
  UrlHandle handle;
  BM_CHECK(handle.url != nullptr);
  if (url.find('\0') != std::string::npos) return bad_url(url, CURLUE_MALFORMED_INPUT);
  CURLUcode code = curl_url_set(handle.url, CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME);
  if (code != CURLUE_OK) return bad_url(url, code);
  UrlParts parts;
  parts.scheme = absl::AsciiStrToLower(handle.get(CURLUPART_SCHEME));
  parts.host = absl::AsciiStrToLower(handle.get(CURLUPART_HOST));
  parts.port = handle.get(CURLUPART_PORT, CURLU_DEFAULT_PORT);
  return parts;
}

absl::StatusOr<std::string> resolve_url_reference(const std::string& base, const std::string& reference) {
  UrlHandle handle;
  BM_CHECK(handle.url != nullptr);
  if (reference.find('\0') != std::string::npos) return bad_url(reference, CURLUE_MALFORMED_INPUT);
  CURLUcode code = curl_url_set(handle.url, CURLUPART_URL, base.c_str(), CURLU_NON_SUPPORT_SCHEME);
  if (code != CURLUE_OK) return bad_url(base, code);
  // With a URL already set, curl resolves a relative one against it (RFC 3986 §5).
  code = curl_url_set(handle.url, CURLUPART_URL, reference.c_str(), CURLU_NON_SUPPORT_SCHEME);
  if (code != CURLUE_OK) return bad_url(reference, code);
  return handle.get(CURLUPART_URL);
}

std::string url_origin(const std::string& url) {
  absl::StatusOr<UrlParts> parts = parse_url(url);
  return parts.ok() ? parts->origin() : std::string();
}

std::string url_escape(std::string_view text, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace bm::common
