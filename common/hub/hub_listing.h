#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/hub/hub_limits.h"
#include "common/hub/remote_file.h"

namespace bm::common {

// Who a listing comes from, for the messages, and the limits it is held to.
struct ListingSource {
  std::string endpoint;
  std::string repo_id;
  HubLimits limits;
};

// The hub's API answers, parsed and validated before any of it becomes a path, a size or a URL (DESIGN §9:
// nothing a hub says is trusted). Pure functions of the body, so tests/fuzz/hub_listing_fuzz.cpp drives them
// directly. A malformed answer is DATA_LOSS with one sentence naming the endpoint, the repo and the field.

// HF `GET /api/models/{repo}/revision/{revision}`: the 40-hex commit in "sha".
absl::StatusOr<std::string> parse_hf_revision_info(std::string_view body, const ListingSource& source,
                                                   const std::string& revision);
// One page of HF `GET /api/models/{repo}/tree/{commit}?recursive=True`: appends its files (url left empty).
// Non-LFS files carry their git blob sha1 ("oid"), LFS files their sha256 ("lfs.oid").
absl::Status parse_hf_tree_page(std::string_view body, const ListingSource& source, std::vector<RemoteFile>* files);
// ModelScope `GET /api/v1/models/{repo}/revisions`: whether `wanted` is one of its branches or tags. An answer
// with Success false is NOT_FOUND with the hub's message.
absl::StatusOr<bool> parse_ms_revisions(std::string_view body, const ListingSource& source, const std::string& wanted);
// ModelScope `GET /api/v1/models/{repo}/repo/files?Recursive=True`: appends its files (url left empty); every
// file must carry a Sha256.
absl::Status parse_ms_file_list(std::string_view body, const ListingSource& source, std::vector<RemoteFile>* files);

// The download plan as a whole, before anything is written: a commit that can be a folder name, no file listed
// twice, no file that is also another's folder, at most `limits.max_snapshot_files` files.
absl::Status validate_snapshot(const RemoteSnapshot& snapshot, const ListingSource& source);

// A revision (the user's, or a ModelScope branch) that becomes a path (refs/{revision}, snapshots/{revision}).
bool is_safe_revision(const std::string& revision);

}  // namespace bm::common
