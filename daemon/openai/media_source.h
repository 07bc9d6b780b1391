#pragma once
// Where the bytes of a request's image or video come from, and the policy that bounds it (vLLM's flags): a
// `data:` URL (base64) always; a local file (`file:///...` or an absolute path) only inside
// --allowed-local-media-path, symlinks resolved before the check; an http(s) URL only when its host is one of
// --allowed-media-domains — fetched with a byte limit, connect and total timeouts, at most kMaxMediaRedirects
// redirects each checked again; no other scheme. Every refusal is an InvalidArgument with one sentence that names
// the URL as the client wrote it (never what a symlink points to).
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace bm::daemon::openai {

struct MediaSourcePolicy {
  std::string allowed_local_media_path;            // canonical folder; empty: no local files
  std::vector<std::string> allowed_media_domains;  // lower-case hosts; empty: no http(s)
  size_t max_bytes = 0;                            // per item, decoded
  long connect_seconds = 5;
  long total_seconds = 5;  // the whole fetch, redirects included per hop
};

absl::StatusOr<std::string> read_media_bytes(const std::string& url, const MediaSourcePolicy& policy);

// The pieces, for tests. The file a `file://` URL or an absolute path names, when it lies inside `allowed_dir`
// (canonical) once every symlink is resolved.
absl::StatusOr<std::filesystem::path> allowed_local_file(const std::string& url, const std::string& allowed_dir);
// OK when `url` is http(s) and its host is exactly one of `domains` (no subdomains, as vLLM).
absl::Status check_media_url_host(const std::string& url, const std::vector<std::string>& domains);

}  // namespace bm::daemon::openai
