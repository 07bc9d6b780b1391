#include "common/hub/ms_api.h"

#include "absl/strings/str_cat.h"
#include "common/hub/hub_listing.h"

namespace bm::common {

ListingSource MsApi::source(const std::string& repo_id) const {
  return ListingSource{session_.config().endpoint, repo_id, session_.limits()};
}

absl::StatusOr<std::string> MsApi::resolve_revision(const std::string& repo_id, const std::string& revision,
                                                    const std::atomic<bool>* cancel) const {
  std::string wanted = revision.empty() ? "master" : revision;
  std::string url = absl::StrCat(session_.config().endpoint, "/api/v1/models/", repo_id, "/revisions");
  absl::StatusOr<HttpResponse> response = session_.get_api(url, repo_id, cancel);
  if (!response.ok()) return response.status();
  absl::StatusOr<bool> listed = parse_ms_revisions(response->body, source(repo_id), wanted);
  if (!listed.ok()) return listed.status();
  if (*listed) return wanted;
  return absl::NotFoundError(
      absl::StrCat("revision \"", wanted, "\" of ", repo_id, " does not exist on ", session_.config().endpoint));
}

absl::StatusOr<RemoteSnapshot> MsApi::list_snapshot(const std::string& repo_id, const std::string& revision,
                                                    const std::atomic<bool>* cancel) const {
  std::string url = absl::StrCat(session_.config().endpoint, "/api/v1/models/", repo_id,
                                 "/repo/files?Revision=", url_escape(revision), "&Recursive=True");
  absl::StatusOr<HttpResponse> response = session_.get_api(url, repo_id, cancel);
  if (!response.ok()) return response.status();
  RemoteSnapshot snapshot;
  snapshot.repo_id = repo_id;
  snapshot.revision = revision;
  snapshot.commit = revision;
  ListingSource from = source(repo_id);
  absl::Status parsed = parse_ms_file_list(response->body, from, &snapshot.files);
  if (!parsed.ok()) return parsed;
  for (RemoteFile& file : snapshot.files) file.url = file_url(repo_id, revision, file.path);
  absl::Status valid = validate_snapshot(snapshot, from);
  if (!valid.ok()) return valid;
  return snapshot;
}

std::string MsApi::file_url(const std::string& repo_id, const std::string& revision, const std::string& path) const {
  return absl::StrCat(session_.config().endpoint, "/api/v1/models/", repo_id, "/repo?Revision=", url_escape(revision),
                      "&FilePath=", url_escape(path));
}

}  // namespace bm::common
