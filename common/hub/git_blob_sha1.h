#pragma once
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bm::common {

// The id git (and so the Hugging Face tree listing, as "oid") gives a file's content:
// sha1("blob <size>\0" + content), lower-case hex. It is how a non-LFS file is verified.
std::string git_blob_sha1_hex(std::string_view content);
absl::StatusOr<std::string> git_blob_sha1_file(const std::string& path);

}  // namespace bm::common
