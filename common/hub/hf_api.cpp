#include "common/hub/hf_api.h"

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace bm::common {
namespace {

using nlohmann::json;

absl::StatusOr<json> parse_json(const HttpResponse& response, const std::string& what) {
  json parsed = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::DataLossError(absl::StrCat("the hub's answer about ", what, " is not JSON"));
  }
  return parsed;
}

}  // namespace

bool is_safe_repo_path(const std::string& path) {
  if (path.empty() || path[0] == '/' || path.find('\\') != std::string::npos) return false;
  if (path.find('\0') != std::string::npos) return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

bool is_commit_sha(const std::string& text) {
  if (text.size() != 40) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string next_link(const std::string& link_header) {
  for (absl::string_view part : absl::StrSplit(link_header, ',')) {
    if (!absl::StrContains(part, "rel=\"next\"")) continue;
    size_t open = part.find('<');
    size_t close = part.find('>');
    if (open != absl::string_view::npos && close != absl::string_view::npos && close > open) {
      return std::string(part.substr(open + 1, close - open - 1));
    }
  }
  return std::string();
}

absl::StatusOr<std::string> HfApi::resolve_commit(const std::string& repo_id, const std::string& revision,
                                                  const std::atomic<bool>* cancel) const {
  std::string url =
      absl::StrCat(session_.config().endpoint, "/api/models/", repo_id, "/revision/", url_escape(revision));
  absl::StatusOr<HttpResponse> response = session_.get_api(url, repo_id, cancel);
  if (!response.ok()) return response.status();
  absl::StatusOr<json> info = parse_json(*response, repo_id);
  if (!info.ok()) return info.status();
  if (!info->contains("sha") || !(*info)["sha"].is_string() || !is_commit_sha((*info)["sha"].get<std::string>())) {
    return absl::DataLossError(absl::StrCat(session_.config().endpoint, " gave no commit for ", repo_id, "@", revision,
                                            "; is ", session_.config().endpoint_variable, " a Hugging Face endpoint?"));
  }
  return (*info)["sha"].get<std::string>();
}

absl::StatusOr<RemoteSnapshot> HfApi::list_snapshot(const std::string& repo_id, const std::string& revision,
                                                    const std::string& commit, const std::atomic<bool>* cancel) const {
  RemoteSnapshot snapshot;
  snapshot.repo_id = repo_id;
  snapshot.revision = revision;
  snapshot.commit = commit;
  std::string url = absl::StrCat(session_.config().endpoint, "/api/models/", repo_id, "/tree/", commit,
                                 "?recursive=True&expand=False");
  while (!url.empty()) {
    absl::StatusOr<HttpResponse> response = session_.get_api(url, repo_id, cancel);
    if (!response.ok()) return response.status();
    absl::StatusOr<json> entries = parse_json(*response, repo_id);
    if (!entries.ok()) return entries.status();
    if (!entries->is_array()) return absl::DataLossError(absl::StrCat("the tree of ", repo_id, " is not a list"));
    for (const json& entry : *entries) {
      if (entry.value("type", "") != "file") continue;
      RemoteFile file;
      file.path = entry.value("path", "");
      if (!is_safe_repo_path(file.path)) {
        return absl::DataLossError(absl::StrCat(repo_id, " lists an unsafe file name \"", file.path, "\""));
      }
      file.size = entry.value("size", uint64_t{0});
      file.etag = entry.value("oid", "");
      if (entry.contains("lfs") && entry["lfs"].is_object()) {
        file.sha256 = entry["lfs"].value("oid", "");
        file.size = entry["lfs"].value("size", file.size);
        file.etag = file.sha256;
      }
      if (file.etag.empty()) {
        return absl::DataLossError(absl::StrCat(repo_id, " lists ", file.path, " without a blob id"));
      }
      file.url = resolve_url(repo_id, commit, file.path);
      snapshot.files.push_back(std::move(file));
    }
    url = next_link(response->header("link"));
  }
  return snapshot;
}

std::string HfApi::resolve_url(const std::string& repo_id, const std::string& commit, const std::string& path) const {
  return absl::StrCat(session_.config().endpoint, "/", repo_id, "/resolve/", commit, "/",
                      url_escape(path, /*keep_slash=*/true));
}

}  // namespace bm::common
