#pragma once
// `data:` URLs as OpenAI clients send images (`data:image/png;base64,iVBOR...`), RFC 2397 with base64 only:
// the media type is reported as written (lower-cased), never trusted for the format (the decoder sniffs bytes).
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bm::engine::vision {

struct DataUrl {
  std::string media_type;  // "image/png"; empty when the URL names none
  std::string bytes;       // decoded payload
};

// InvalidArgument for anything that is not `data:[<type>][;<param>]*;base64,<base64>` or decodes to more than
// max_bytes (checked from the encoded length before decoding).
absl::StatusOr<DataUrl> parse_data_url(std::string_view url, size_t max_bytes);

}  // namespace bm::engine::vision
