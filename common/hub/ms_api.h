#pragma once
#include <atomic>
#include <string>

#include "absl/status/statusor.h"
#include "common/hub/hub_listing.h"
#include "common/hub/hub_session.h"
#include "common/hub/remote_file.h"

namespace bm::common {

// The ModelScope REST API (hub-protocols §4.4): revisions, the recursive file list with Sha256, and
// downloads.
class MsApi {
 public:
  explicit MsApi(const HubSession& session) : session_(session) {}

  // Checks that `revision` (default "master") is a branch or tag of the repo and returns it.
  absl::StatusOr<std::string> resolve_revision(const std::string& repo_id, const std::string& revision,
                                               const std::atomic<bool>* cancel) const;
  absl::StatusOr<RemoteSnapshot> list_snapshot(const std::string& repo_id, const std::string& revision,
                                               const std::atomic<bool>* cancel) const;
  std::string file_url(const std::string& repo_id, const std::string& revision, const std::string& path) const;

 private:
  ListingSource source(const std::string& repo_id) const;

  const HubSession& session_;
};

}  // namespace bm::common
