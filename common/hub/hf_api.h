#pragma once
#include <atomic>
#include <string>

#include "absl/status/statusor.h"
#include "common/hub/hub_listing.h"
#include "common/hub/hub_session.h"
#include "common/hub/remote_file.h"

namespace bm::common {

// The Hugging Face Hub REST API (hub-protocols §3): revision → commit, then the recursive tree listing.
class HfApi {
 public:
  explicit HfApi(const HubSession& session) : session_(session) {}

  // GET /api/models/{repo}/revision/{rev} → the commit sha.
  absl::StatusOr<std::string> resolve_commit(const std::string& repo_id, const std::string& revision,
                                             const std::atomic<bool>* cancel) const;
  // GET /api/models/{repo}/tree/{commit}?recursive=True (paged by Link rel="next", at most
  // limits().max_listing_pages pages, a page seen twice is a loop), validated as a whole.
  absl::StatusOr<RemoteSnapshot> list_snapshot(const std::string& repo_id, const std::string& revision,
                                               const std::string& commit, const std::atomic<bool>* cancel) const;
  std::string resolve_url(const std::string& repo_id, const std::string& commit, const std::string& path) const;

 private:
  ListingSource source(const std::string& repo_id) const;

  const HubSession& session_;
};

// The URL of `rel="next"` in a Link header, or empty.
std::string next_link(const std::string& link_header);
bool is_commit_sha(const std::string& text);

}  // namespace bm::common
