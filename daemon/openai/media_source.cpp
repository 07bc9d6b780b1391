#include "daemon/openai/media_source.h"

#include <algorithm>
#include <fstream>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/hub/http_client.h"
#include "engine/vision/data_url.h"

namespace bm::daemon::openai {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxMediaRedirects = 3;

// The URL as it may appear in a message: clients send long data URLs, so only their start is quoted.
std::string shown(const std::string& url) {
  return url.size() > 120 ? url.substr(0, 120) + "..." : url;
}

absl::Status refuse(const std::string& url, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("media URL '", shown(url), "' ", why));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// file:///a%20b → "/a b" (vLLM reads the URL's path through url2pathname, which unquotes).
std::optional<std::string> percent_decoded(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size() || hex_value(text[i + 1]) < 0 || hex_value(text[i + 2]) < 0) return std::nullopt;
    out.push_back(static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2])));
    i += 2;
  }
  if (out.find('\0') != std::string::npos) return std::nullopt;
  return out;
}

bool is_inside(const fs::path& file, const fs::path& dir) {
  auto f = file.begin();
  for (auto d = dir.begin(); d != dir.end(); ++d, ++f) {
    if (d->empty()) continue;  // a trailing separator
    if (f == file.end() || *f != *d) return false;
  }
  return f != file.end();  // the folder itself is not a file inside it
}

absl::StatusOr<std::string> read_local(const std::string& url, const MediaSourcePolicy& policy) {
  absl::StatusOr<fs::path> path = allowed_local_file(url, policy.allowed_local_media_path);
  if (!path.ok()) return path.status();
  std::error_code ec;
  if (!fs::is_regular_file(*path, ec)) return refuse(url, "is not a readable file");
  const uintmax_t size = fs::file_size(*path, ec);
  if (ec) return refuse(url, "is not a readable file");
  if (size > policy.max_bytes)
    return refuse(url, absl::StrCat("is ", size, " bytes, over the limit of ", policy.max_bytes));
  std::ifstream in(*path, std::ios::binary);
  std::string bytes(static_cast<size_t>(size), '\0');
  if (!in.read(bytes.data(), static_cast<std::streamsize>(size))) return refuse(url, "could not be read");
  return bytes;
}

absl::StatusOr<std::string> fetch_http(const std::string& first_url, const MediaSourcePolicy& policy) {
  common::HttpTimeouts timeouts;
  timeouts.connect_seconds = policy.connect_seconds;
  timeouts.min_bytes_per_second = 0;  // the total timeout bounds a slow server instead
  timeouts.total_seconds = policy.total_seconds;
  common::HttpClient client(timeouts);
  std::string url = first_url;
  for (int hop = 0;; ++hop) {
    if (absl::Status s = check_media_url_host(url, policy.allowed_media_domains); !s.ok()) {
      if (hop == 0) return s;
      return refuse(first_url, absl::StrCat("redirects to a host --allowed-media-domains does not list"));
    }
    common::HttpRequest request;
    request.url = url;
    request.max_body_bytes = policy.max_bytes;
    absl::StatusOr<common::HttpResponse> response = client.perform(request);
    if (!response.ok()) {
      const bool slow = response.status().code() == absl::StatusCode::kDeadlineExceeded;
      return refuse(first_url, slow ? absl::StrCat("could not be fetched within ", policy.total_seconds, " s")
                                    : "could not be fetched (the host cannot be reached)");
    }
    if (response->body_too_large)
      return refuse(first_url, absl::StrCat("is over the limit of ", policy.max_bytes, " bytes"));
    const long status = response->status;
    if (status >= 200 && status < 300) return std::move(response->body);
    const bool redirect = status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
    if (!redirect) return refuse(first_url, absl::StrCat("answered HTTP ", status));
    if (hop == kMaxMediaRedirects)
      return refuse(first_url, absl::StrCat("redirects more than ", kMaxMediaRedirects, " times"));
    std::string location = response->header("location");
    if (location.empty()) return refuse(first_url, absl::StrCat("answered HTTP ", status, " without a Location"));
    absl::StatusOr<std::string> next = common::resolve_url_reference(url, location);
    if (!next.ok()) return refuse(first_url, "redirects to something that is not a URL");
    url = *std::move(next);
  }
}

}  // namespace

absl::Status check_media_url_host(const std::string& url, const std::vector<std::string>& domains) {
  absl::StatusOr<common::UrlParts> parts = common::parse_url(url);
  if (!parts.ok() || !common::is_http_scheme(parts->scheme)) return refuse(url, "is not an http(s) URL");
  if (domains.empty())
    return refuse(url,
                  "is refused: this server fetches no http(s) media (the operator may list hosts with "
                  "--allowed-media-domains)");
  if (std::find(domains.begin(), domains.end(), parts->host) == domains.end())
    return refuse(url,
                  absl::StrCat("is refused: its host '", parts->host, "' is not one --allowed-media-domains lists"));
  return absl::OkStatus();
}

absl::StatusOr<fs::path> allowed_local_file(const std::string& url, const std::string& allowed_dir) {
  if (allowed_dir.empty())
    return refuse(url,
                  "is refused: this server reads no local files (the operator may allow a folder with "
                  "--allowed-local-media-path)");
  std::string path_text = url;
  if (absl::StartsWith(url, "file:")) {
    // file:///abs/path or file://localhost/abs/path; a remote host would be a different machine's file.
    std::string rest = url.substr(5);
    if (absl::StartsWith(rest, "//")) {
      rest = rest.substr(2);
      const size_t slash = rest.find('/');
      const std::string host = slash == std::string::npos ? rest : rest.substr(0, slash);
      if (!host.empty() && host != "localhost") return refuse(url, "names a file on another host");
      rest = slash == std::string::npos ? "" : rest.substr(slash);
    }
    if (rest.find_first_of("?#") != std::string::npos) return refuse(url, "has a query or fragment");
    std::optional<std::string> decoded = percent_decoded(rest);
    if (!decoded) return refuse(url, "is not a well-formed file URL");
    path_text = *decoded;
  }
  if (path_text.empty() || path_text.front() != '/' || path_text.find('\0') != std::string::npos)
    return refuse(url, "is not an absolute file path");
  std::error_code ec;
  // weakly_canonical resolves every symlink of the part that exists, so a link inside the folder that points out of
  // it is judged by where it points; what does not exist is judged by its name, and then fails to open.
  fs::path resolved = fs::weakly_canonical(fs::path(path_text), ec);
  if (ec) return refuse(url, "cannot be resolved");
  if (!is_inside(resolved, fs::path(allowed_dir)))
    return refuse(url, "is outside the folder --allowed-local-media-path allows");
  return resolved;
}

absl::StatusOr<std::string> read_media_bytes(const std::string& url, const MediaSourcePolicy& policy) {
  if (absl::StartsWithIgnoreCase(url, "data:")) {
    absl::StatusOr<engine::vision::DataUrl> data = engine::vision::parse_data_url(url, policy.max_bytes);
    if (!data.ok()) return data.status();  // a sentence about the data: URL already
    return std::move(data->bytes);
  }
  if (absl::StartsWithIgnoreCase(url, "http://") || absl::StartsWithIgnoreCase(url, "https://"))
    return fetch_http(url, policy);
  if (absl::StartsWith(url, "file:") || absl::StartsWith(url, "/")) return read_local(url, policy);
  return refuse(url, "is not a data:, file:// or http(s):// URL");
}

}  // namespace bm::daemon::openai
