#pragma once
#include <string>

#include "absl/status/statusor.h"
#include "bmserver/v1/models.pb.h"
#include "common/hub/downloader.h"

namespace bm::daemon::control {

// Hub, layout and root for a request about `repo_id`, by the same rules as the store listing (common/store/).
// Download and Update download with these; Remove locks the same repo lock with them.
absl::StatusOr<common::DownloadOptions> download_options_for(const bmserver::v1::StoreSelector& selector,
                                                             const std::string& repo_id, const std::string& revision);

}  // namespace bm::daemon::control
