#include "common/hub/hf_api.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/hub/hub_listing.h"

namespace bm::common {

bool is_commit_sha(const std::string& text) {
  return is_hex_digest(text, 40);
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

ListingSource HfApi::source(const std::string& repo_id) const {
  return ListingSource{session_.config().endpoint, repo_id, session_.limits()};
}

absl::StatusOr<std::string> HfApi::resolve_commit(const std::string& repo_id, const std::string& revision,
                                                  const std::atomic<bool>* cancel) const {
  std::string url =
      absl::StrCat(session_.config().endpoint, "/api/models/", repo_id, "/revision/", url_escape(revision));
  absl::StatusOr<HttpResponse> response = session_.get_api(url, repo_id, cancel);
  if (!response.ok()) return response.status();
  return parse_hf_revision_info(response->body, source(repo_id), revision);
}

absl::StatusOr<RemoteSnapshot> HfApi::list_snapshot(const std::string& repo_id, const std::string& revision,
                                                    const std::string& commit, const std::atomic<bool>* cancel) const {
  RemoteSnapshot snapshot;
  snapshot.repo_id = repo_id;
  snapshot.revision = revision;
  snapshot.commit = commit;
  ListingSource from = source(repo_id);
  std::string url = absl::StrCat(session_.config().endpoint, "/api/models/", repo_id, "/tree/", commit,
                                 "?recursive=True&expand=False");
  std::set<std::string> seen;
  while (!url.empty()) {
    // A hub that pages forever, or back to a page it gave, never ends a listing otherwise.
    if (!seen.insert(url).second) {
      return absl::DataLossError(
          absl::StrCat(from.endpoint, "'s tree of ", repo_id, " pages in a loop (back to ", url, ")"));
    }
    if (static_cast<int>(seen.size()) > from.limits.max_listing_pages) {
      return absl::DataLossError(absl::StrCat(from.endpoint, "'s tree of ", repo_id, " has more than ",
                                              from.limits.max_listing_pages, " pages"));
    }
    absl::StatusOr<HttpResponse> response = session_.get_api(url, repo_id, cancel);
    if (!response.ok()) return response.status();
    absl::Status page = parse_hf_tree_page(response->body, from, &snapshot.files);
    if (!page.ok()) return page;
    std::string next = next_link(response->header("link"));
    if (!next.empty()) {
      absl::StatusOr<std::string> resolved = resolve_url_reference(url, next);
      if (!resolved.ok())
        return absl::DataLossError(
            absl::StrCat(from.endpoint, "'s tree of ", repo_id, " links to a next page ", resolved.status().message()));
      next = *resolved;
    }
    url = next;
  }
  for (RemoteFile& file : snapshot.files) file.url = resolve_url(repo_id, commit, file.path);
  absl::Status valid = validate_snapshot(snapshot, from);
  if (!valid.ok()) return valid;
  return snapshot;
}

std::string HfApi::resolve_url(const std::string& repo_id, const std::string& commit, const std::string& path) const {
  return absl::StrCat(session_.config().endpoint, "/", repo_id, "/resolve/", commit, "/",
                      url_escape(path, /*keep_slash=*/true));
}

}  // namespace bm::common
