#include "common/hub/hub_listing.h"

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace bm::common {
namespace {

using nlohmann::json;

constexpr size_t kQuotedBytes = 100;

// A hub's value in a message: quoted, escaped, cut short (it may be anything, of any length).
std::string hub_value(std::string_view text) {
  std::string out =
      absl::StrCat("\"", absl::CHexEscape(absl::string_view(text.data(), std::min(text.size(), kQuotedBytes))), "\"");
  if (text.size() > kQuotedBytes) absl::StrAppend(&out, " (", text.size(), " bytes)");
  return out;
}

std::string json_value(const json& value) {
  return value.is_string() ? hub_value(value.get_ref<const std::string&>())
                           : hub_value(value.dump(-1, ' ', false, json::error_handler_t::replace));
}

// The deepest nesting of `body`, scanning only as far as `limit` + 1, so a parse never sees more.
bool nesting_within(std::string_view body, int limit) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

absl::StatusOr<json> parse_json(std::string_view body, const ListingSource& source, const char* what) {
  if (!nesting_within(body, kMaxJsonDepth)) {
    return absl::DataLossError(absl::StrCat(source.endpoint, "'s ", what, " of ", source.repo_id, " nests deeper than ",
                                            kMaxJsonDepth, " levels"));
  }
  json parsed = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::DataLossError(absl::StrCat(source.endpoint, "'s ", what, " of ", source.repo_id, " is not JSON"));
  }
  return parsed;
}

const json* member(const json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// Names one entry of a listing in messages: its path when it has a usable one, else its position.
struct EntryName {
  const ListingSource& source;
  std::string name;

  absl::Status bad(const std::string& field, const std::string& problem) const {
    return absl::DataLossError(absl::StrCat(source.endpoint, " lists ", source.repo_id, " ", name, " with ", field,
                                            problem.empty() ? "" : " ", problem));
  }
};

absl::StatusOr<std::string> string_field(const json& object, const char* key, const EntryName& entry) {
  const json* value = member(object, key);
  if (value == nullptr) return entry.bad(absl::StrCat("no \"", key, "\""), "");
  if (!value->is_string()) return entry.bad(absl::StrCat("\"", key, "\" ", json_value(*value)), "that is not a string");
  return value->get<std::string>();
}

absl::StatusOr<uint64_t> size_field(const json& object, const char* key, const std::string& field,
                                    const EntryName& entry) {
  const json* value = member(object, key);
  if (value == nullptr) return entry.bad(absl::StrCat("no ", field), "");
  std::string named = absl::StrCat(field, " ", json_value(*value));
  if (value->is_number_integer() && !value->is_number_unsigned()) return entry.bad(named, "that is negative");
  if (!value->is_number_unsigned()) return entry.bad(named, "that is not a byte count");
  uint64_t size = value->get<uint64_t>();
  if (size > entry.source.limits.max_file_bytes) {
    return entry.bad(named, absl::StrCat("above the ", entry.source.limits.max_file_bytes, "-byte limit of one file"));
  }
  return size;
}

absl::StatusOr<std::string> digest_field(const json& object, const char* key, const std::string& field, size_t digits,
                                         const char* kind, const EntryName& entry) {
  const json* value = member(object, key);
  if (value == nullptr) return entry.bad(absl::StrCat("no ", field), "");
  if (!value->is_string() || !is_hex_digest(value->get<std::string>(), digits)) {
    return entry.bad(absl::StrCat(field, " ", json_value(*value)),
                     absl::StrCat("that is not a ", digits, "-hex ", kind, " (lower-case)"));
  }
  return value->get<std::string>();
}

absl::Status check_count(const std::vector<RemoteFile>& files, const ListingSource& source) {
  if (files.size() <= source.limits.max_snapshot_files) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat(source.endpoint, " lists more than ", source.limits.max_snapshot_files,
                                          " files for ", source.repo_id));
}

// The {"Code", "Data", "Message", "Success"} envelope of ModelScope answers.
absl::StatusOr<json> envelope_data(std::string_view body, const ListingSource& source, const char* what) {
  absl::StatusOr<json> parsed = parse_json(body, source, what);
  if (!parsed.ok()) return parsed.status();
  if (!parsed->is_object()) {
    return absl::DataLossError(absl::StrCat(source.endpoint, "'s ", what, " of ", source.repo_id, " is not an object"));
  }
  const json* success = member(*parsed, "Success");
  const json* code = member(*parsed, "Code");
  bool ok = success != nullptr ? success->is_boolean() && success->get<bool>()
                               : code != nullptr && code->is_number_integer() && code->get<int64_t>() == 200;
  const json* data = member(*parsed, "Data");
  if (!ok || data == nullptr) {
    const json* message = member(*parsed, "Message");
    return absl::NotFoundError(
        absl::StrCat(source.endpoint, " refused ", source.repo_id, ": ",
                     message != nullptr && message->is_string() ? json_value(*message) : "no reason"));
  }
  return *data;
}

}  // namespace

bool is_safe_repo_path(const std::string& path) {
  if (path.empty() || path.size() > kMaxNameBytes || path[0] == '/') return false;
  for (unsigned char c : path) {
    if (c < 0x20 || c == 0x7f || c == '\\') return false;
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

bool is_hex_digest(const std::string& text, size_t digits) {
  if (text.size() != digits) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool is_safe_revision(const std::string& revision) {
  return is_safe_repo_path(revision);
}

absl::StatusOr<std::string> parse_hf_revision_info(std::string_view body, const ListingSource& source,
                                                   const std::string& revision) {
  absl::StatusOr<json> info = parse_json(body, source, "revision info");
  if (!info.ok()) return info.status();
  const json* sha = member(*info, "sha");
  if (sha == nullptr || !sha->is_string() || !is_hex_digest(sha->get<std::string>(), 40)) {
    return absl::DataLossError(absl::StrCat(
        source.endpoint, " gave ", sha == nullptr ? "no \"sha\"" : absl::StrCat("\"sha\" ", json_value(*sha)), " for ",
        source.repo_id, "@", hub_value(revision), " where a 40-hex commit belongs; is it a Hugging Face endpoint?"));
  }
  return sha->get<std::string>();
}

absl::Status parse_hf_tree_page(std::string_view body, const ListingSource& source, std::vector<RemoteFile>* files) {
  absl::StatusOr<json> entries = parse_json(body, source, "tree");
  if (!entries.ok()) return entries.status();
  if (!entries->is_array()) {
    return absl::DataLossError(absl::StrCat(source.endpoint, "'s tree of ", source.repo_id, " is not a list"));
  }
  size_t index = 0;
  for (const json& item : *entries) {
    EntryName entry{source, absl::StrCat("tree entry ", index++)};
    if (!item.is_object()) return entry.bad("a value", "that is not an object");
    const json* type = member(item, "type");
    if (type == nullptr || !type->is_string()) return entry.bad("no string \"type\"", "");
    if (type->get<std::string>() != "file") continue;  // folders (and anything newer) carry no bytes
    absl::StatusOr<std::string> path = string_field(item, "path", entry);
    if (!path.ok()) return path.status();
    if (!is_safe_repo_path(*path))
      return entry.bad(absl::StrCat("\"path\" ", hub_value(*path)), "that is an unsafe file name");
    entry.name = hub_value(*path);
    RemoteFile file;
    file.path = *path;
    const json* lfs = member(item, "lfs");
    if (lfs != nullptr && !lfs->is_null()) {
      if (!lfs->is_object()) return entry.bad(absl::StrCat("\"lfs\" ", json_value(*lfs)), "that is not an object");
      absl::StatusOr<std::string> sha256 = digest_field(*lfs, "oid", "\"lfs.oid\"", 64, "sha256", entry);
      if (!sha256.ok()) return sha256.status();
      absl::StatusOr<uint64_t> size = size_field(*lfs, "size", "\"lfs.size\"", entry);
      if (!size.ok()) return size.status();
      file.sha256 = *sha256;
      file.etag = *sha256;
      file.size = *size;
    } else {
      absl::StatusOr<std::string> sha1 = digest_field(item, "oid", "\"oid\"", 40, "git blob sha1", entry);
      if (!sha1.ok()) return sha1.status();
      absl::StatusOr<uint64_t> size = size_field(item, "size", "\"size\"", entry);
      if (!size.ok()) return size.status();
      file.git_sha1 = *sha1;
      file.etag = *sha1;
      file.size = *size;
    }
    files->push_back(std::move(file));
    absl::Status count = check_count(*files, source);
    if (!count.ok()) return count;
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> parse_ms_revisions(std::string_view body, const ListingSource& source, const std::string& wanted) {
  absl::StatusOr<json> data = envelope_data(body, source, "revision list");
  if (!data.ok()) return data.status();
  const json* map = member(*data, "RevisionMap");
  if (map == nullptr) map = &*data;
  for (const char* kind : {"Branches", "Tags"}) {
    const json* list = member(*map, kind);
    if (list == nullptr || !list->is_array()) continue;
    for (const json& item : *list) {
      const json* name = member(item, "Revision");
      if (name != nullptr && name->is_string() && name->get<std::string>() == wanted) return true;
    }
  }
  return false;
}

absl::Status parse_ms_file_list(std::string_view body, const ListingSource& source, std::vector<RemoteFile>* files) {
  absl::StatusOr<json> data = envelope_data(body, source, "file list");
  if (!data.ok()) return data.status();
  const json* list = member(*data, "Files");
  if (list == nullptr || !list->is_array()) {
    return absl::DataLossError(absl::StrCat(source.endpoint, "'s file list of ", source.repo_id, " has no Files"));
  }
  size_t index = 0;
  for (const json& item : *list) {
    EntryName entry{source, absl::StrCat("file entry ", index++)};
    if (!item.is_object()) return entry.bad("a value", "that is not an object");
    const json* type = member(item, "Type");
    if (type == nullptr || !type->is_string()) return entry.bad("no string \"Type\"", "");
    if (type->get<std::string>() != "blob") continue;
    absl::StatusOr<std::string> path = string_field(item, "Path", entry);
    if (!path.ok()) return path.status();
    // The SDK skips git's own files (hub-protocols §4.4).
    if (*path == ".gitignore" || *path == ".gitattributes") continue;
    if (!is_safe_repo_path(*path))
      return entry.bad(absl::StrCat("\"Path\" ", hub_value(*path)), "that is an unsafe file name");
    entry.name = hub_value(*path);
    absl::StatusOr<uint64_t> size = size_field(item, "Size", "\"Size\"", entry);
    if (!size.ok()) return size.status();
    absl::StatusOr<std::string> sha256 = digest_field(item, "Sha256", "\"Sha256\"", 64, "sha256", entry);
    if (!sha256.ok()) return sha256.status();
    RemoteFile file;
    file.path = *path;
    file.size = *size;
    file.sha256 = *sha256;
    file.etag = *sha256;
    files->push_back(std::move(file));
    absl::Status count = check_count(*files, source);
    if (!count.ok()) return count;
  }
  return absl::OkStatus();
}

absl::Status validate_snapshot(const RemoteSnapshot& snapshot, const ListingSource& source) {
  if (!is_safe_revision(snapshot.commit)) {
    return absl::DataLossError(absl::StrCat(source.endpoint, " gave the revision ", hub_value(snapshot.commit), " for ",
                                            source.repo_id, ", which cannot be a folder name"));
  }
  absl::Status count = check_count(snapshot.files, source);
  if (!count.ok()) return count;
  std::set<std::string_view> paths;
  for (const RemoteFile& file : snapshot.files) {
    if (!paths.insert(file.path).second) {
      return absl::DataLossError(
          absl::StrCat(source.endpoint, " lists ", source.repo_id, " ", hub_value(file.path), " twice"));
    }
  }
  for (const RemoteFile& file : snapshot.files) {
    for (size_t slash = file.path.find('/'); slash != std::string::npos; slash = file.path.find('/', slash + 1)) {
      if (paths.count(std::string_view(file.path).substr(0, slash)) > 0) {
        return absl::DataLossError(absl::StrCat(source.endpoint, " lists ", source.repo_id, " ",
                                                hub_value(file.path.substr(0, slash)),
                                                " both as a file and as the folder of ", hub_value(file.path)));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace bm::common
