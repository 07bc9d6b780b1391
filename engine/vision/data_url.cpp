#include "engine/vision/data_url.h"

#include <algorithm>
#include <cctype>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace bm::engine::vision {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

}  // namespace

absl::StatusOr<DataUrl> parse_data_url(std::string_view url, size_t max_bytes) {
  if (lower(url.substr(0, 5)) != "data:") {
    return absl::InvalidArgumentError("The URL is not a data: URL.");
  }
  const size_t comma = url.find(',');
  if (comma == std::string_view::npos) {
    return absl::InvalidArgumentError("The data: URL has no ',' before its payload.");
  }
  const std::string_view header = url.substr(5, comma - 5);
  const std::string_view payload = url.substr(comma + 1);
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t end = header.find(';', start);
    parts.push_back(header.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  if (lower(parts.back()) != "base64") {
    return absl::InvalidArgumentError("The data: URL is not base64-encoded (';base64,' is required).");
  }
  DataUrl out;
  out.media_type = lower(parts.size() == 1 ? std::string_view() : parts.front());
  for (const char c : out.media_type) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '/' && c != '.' && c != '+' && c != '-') {
      return absl::InvalidArgumentError("The data: URL's media type has characters a media type cannot have.");
    }
  }
  // Three bytes per four characters; checked before decoding so an oversized payload is never expanded.
  if (payload.size() / 4 * 3 > max_bytes + 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("The data: URL's payload is over the limit of ", max_bytes, " bytes."));
  }
  if (!absl::Base64Unescape(absl::string_view(payload.data(), payload.size()), &out.bytes)) {
    return absl::InvalidArgumentError("The data: URL's payload is not valid base64.");
  }
  if (out.bytes.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("The data: URL's payload is over the limit of ", max_bytes, " bytes."));
  }
  if (out.bytes.empty()) return absl::InvalidArgumentError("The data: URL's payload is empty.");
  return out;
}

}  // namespace bm::engine::vision
