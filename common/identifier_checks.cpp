#include "common/identifier_checks.h"

#include <vector>
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace bm::common {
namespace {

constexpr size_t kMaxRevisionBytes = 255;
constexpr size_t kMaxPathBytes = 4096;

// Quoted for the message, with anything unprintable shown as an escape so the sentence stays one line.
std::string quoted(std::string_view text) {
  std::string out = "\"";
  for (char c : text.substr(0, 300)) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f)
      absl::StrAppend(&out, "\\x", absl::Hex(u, absl::kZeroPad2));
    else
      out += c;
  }
  return out + (text.size() > 300 ? "...\"" : "\"");
}

std::vector<std::string_view> split_on_slash(std::string_view text) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t slash = text.find('/', start);
    parts.push_back(text.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) return parts;
    start = slash + 1;
  }
}

}  // namespace

absl::Status check_revision(std::string_view revision) {
  if (revision.empty()) return absl::OkStatus();
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("revision ", quoted(revision), " is not a branch, tag or commit: ", std::string(why)));
  };
  if (revision.size() > kMaxRevisionBytes) return bad(absl::StrCat("longer than ", kMaxRevisionBytes, " bytes"));
  for (char c : revision)
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-' && c != '/')
      return bad("only letters, digits, '.', '_', '-' and '/' may appear");
  for (std::string_view part : split_on_slash(revision)) {
    if (part.empty()) return bad("it has an empty part (a leading, trailing or doubled '/')");
    if (part == "." || part == "..") return bad("'.' and '..' parts are not allowed");
  }
  return absl::OkStatus();
}

absl::Status check_client_path(std::string_view path, std::string_view what) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), " ", quoted(path), " ", std::string(why)));
  };
  if (path.size() > kMaxPathBytes) return bad(absl::StrCat("is longer than ", kMaxPathBytes, " bytes"));
  for (char c : path)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return bad("contains a control character");
  if (path.empty() || path.front() != '/')
    return bad("is not an absolute path (the daemon does not share the client's working directory)");
  for (std::string_view part : split_on_slash(path))
    if (part == "..") return bad("contains a '..' part; give the path without it");
  return absl::OkStatus();
}

}  // namespace bm::common
