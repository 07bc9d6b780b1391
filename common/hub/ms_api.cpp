#include "common/hub/ms_api.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace bm::common {
namespace {

using nlohmann::json;

// Unwraps the {"Code", "Data", "Message", "Success"} envelope.
absl::StatusOr<json> envelope_data(const HttpResponse& response, const std::string& what, const std::string& endpoint) {
  json parsed = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return absl::DataLossError(absl::StrCat(endpoint, " answered about ", what, " with something not JSON"));
  }
  bool success = parsed.value("Success", parsed.value("Code", 0) == 200);
  if (!success || !parsed.contains("Data")) {
    return absl::NotFoundError(absl::StrCat(endpoint, " refused ", what, ": ", parsed.value("Message", "no reason")));
  }
  return parsed["Data"];
}

}  // namespace

absl::StatusOr<std::string> MsApi::resolve_revision(const std::string& repo_id, const std::string& revision,
                                                    const std::atomic<bool>* cancel) const {
  std::string wanted = revision.empty() ? "master" : revision;
  std::string url = absl::StrCat(session_.config().endpoint, "/api/v1/models/", repo_id, "/revisions");
  absl::StatusOr<HttpResponse> response = session_.get_api(url, repo_id, cancel);
  if (!response.ok()) return response.status();
  absl::StatusOr<json> data = envelope_data(*response, repo_id, session_.config().endpoint);
  if (!data.ok()) return data.status();
  const json& map = data->contains("RevisionMap") ? (*data)["RevisionMap"] : *data;
  for (const char* kind : {"Branches", "Tags"}) {
    if (!map.contains(kind) || !map[kind].is_array()) continue;
    for (const json& item : map[kind]) {
      if (item.value("Revision", "") == wanted) return wanted;
    }
  }
  return absl::NotFoundError(
      absl::StrCat("revision \"", wanted, "\" of ", repo_id, " does not exist on ", session_.config().endpoint));
}

absl::StatusOr<RemoteSnapshot> MsApi::list_snapshot(const std::string& repo_id, const std::string& revision,
                                                    const std::atomic<bool>* cancel) const {
  std::string url = absl::StrCat(session_.config().endpoint, "/api/v1/models/", repo_id,
                                 "/repo/files?Revision=", url_escape(revision), "&Recursive=True");
  absl::StatusOr<HttpResponse> response = session_.get_api(url, repo_id, cancel);
  if (!response.ok()) return response.status();
  absl::StatusOr<json> data = envelope_data(*response, repo_id, session_.config().endpoint);
  if (!data.ok()) return data.status();
  RemoteSnapshot snapshot;
  snapshot.repo_id = repo_id;
  snapshot.revision = revision;
  snapshot.commit = revision;
  if (!data->contains("Files") || !(*data)["Files"].is_array()) {
    return absl::DataLossError(absl::StrCat("the file list of ", repo_id, " has no Files"));
  }
  for (const json& entry : (*data)["Files"]) {
    if (entry.value("Type", "") != "blob") continue;
    RemoteFile file;
    file.path = entry.value("Path", "");
    // The SDK skips git's own files (hub-protocols §4.4).
    if (file.path == ".gitignore" || file.path == ".gitattributes") continue;
    if (!is_safe_repo_path(file.path)) {
      return absl::DataLossError(absl::StrCat(repo_id, " lists an unsafe file name \"", file.path, "\""));
    }
    file.size = entry.value("Size", uint64_t{0});
    file.sha256 = entry.value("Sha256", "");
    file.etag = file.sha256.empty() ? entry.value("Revision", "") : file.sha256;
    file.url = file_url(repo_id, revision, file.path);
    snapshot.files.push_back(std::move(file));
  }
  return snapshot;
}

std::string MsApi::file_url(const std::string& repo_id, const std::string& revision, const std::string& path) const {
  return absl::StrCat(session_.config().endpoint, "/api/v1/models/", repo_id, "/repo?Revision=", url_escape(revision),
                      "&FilePath=", url_escape(path));
}

}  // namespace bm::common
