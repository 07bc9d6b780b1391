#pragma once
// Strings from a client that end up in a file path (DESIGN §9: identifiers that become paths are validated for
// their exact form). Each check returns INVALID_ARGUMENT with a sentence naming the offending value.
#include <string_view>

#include "absl/status/status.h"

namespace bm::common {

// A branch, tag or commit: letters, digits, '.', '_', '-' and '/' between non-empty parts, none of them "." or
// "..", at most 255 bytes (it becomes refs/<revision> in the Hugging Face cache). Empty means the hub's default.
absl::Status check_revision(std::string_view revision);

// A path a client names for the daemon to read or write: absolute (the daemon does not share the client's
// working directory), no ".." part, no control characters, at most 4096 bytes. `what` names the field, e.g.
// "--local-dir".
absl::Status check_client_path(std::string_view path, std::string_view what);

}  // namespace bm::common
