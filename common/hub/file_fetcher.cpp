#include "common/hub/file_fetcher.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/hub/git_blob_sha1.h"
#include "common/hub/layout_util.h"
#include "common/hub/sha256.h"

namespace bm::common {

namespace fs = std::filesystem;

namespace {

// Renames the largest orphan `{prefix}.*.incomplete` to `temp_path` and deletes the others.
void adopt_orphans(const std::string& prefix, const std::string& temp_path, uint64_t max_size) {
  fs::path dir = fs::path(prefix).parent_path();
  std::string stem = fs::path(prefix).filename().string() + ".";
  std::error_code ec;
  std::string best;
  uint64_t best_size = 0;
  std::vector<std::string> orphans;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (!absl::StartsWith(name, stem) || !absl::EndsWith(name, ".incomplete")) continue;
    orphans.push_back(entry.path().string());
    uint64_t size = entry.file_size(ec);
    if (!ec && size <= max_size && (best.empty() || size > best_size)) {
      best = entry.path().string();
      best_size = size;
    }
  }
  for (const std::string& orphan : orphans) {
    if (orphan == best && std::rename(best.c_str(), temp_path.c_str()) == 0) continue;
    fs::remove(orphan, ec);
  }
}

struct Digest {
  const char* name;
  std::string listed;
  std::string actual;
};

// The digest the hub listed for `file` (the listing guarantees one) and that of the bytes at `path`.
absl::StatusOr<Digest> digest_of(const RemoteFile& file, const std::string& path) {
  if (!file.sha256.empty()) {
    absl::StatusOr<std::string> sha = sha256_file(path);
    if (!sha.ok()) return sha.status();
    return Digest{"sha256", file.sha256, *sha};
  }
  if (!file.git_sha1.empty()) {
    absl::StatusOr<std::string> sha = git_blob_sha1_file(path);
    if (!sha.ok()) return sha.status();
    return Digest{"git blob sha1", file.git_sha1, *sha};
  }
  return absl::DataLossError(absl::StrCat(file.path, " has no digest to verify it by"));
}

// The first byte of a 206's `Content-Range: bytes FIRST-LAST/TOTAL`, when it says the range starts there
// and the total is the listed size (or "*").
bool is_range_from(const std::string& content_range, uint64_t offset, uint64_t size) {
  std::vector<std::string> parts = absl::StrSplit(content_range, absl::ByAnyChar(" -/"));
  uint64_t first = 0, last = 0, total = 0;
  if (parts.size() != 4 || parts[0] != "bytes" || !absl::SimpleAtoi(parts[1], &first) ||
      !absl::SimpleAtoi(parts[2], &last)) {
    return false;
  }
  if (parts[3] != "*" && (!absl::SimpleAtoi(parts[3], &total) || total != size)) return false;
  return first == offset && last >= first;
}

uint64_t size_of(const std::string& path) {
  std::error_code ec;
  uint64_t size = fs::file_size(path, ec);
  return ec ? 0 : size;
}

}  // namespace

absl::StatusOr<std::string> FileFetcher::fetch(const RemoteFile& file, const std::string& temp_prefix,
                                               const std::atomic<bool>* cancel) {
  std::string temp_path = absl::StrCat(temp_prefix, ".", unique_suffix(), ".incomplete");
  temp_path_ = temp_path;
  adopt_orphans(temp_prefix, temp_path, file.size);
  tracker_.start_file(file.path, file.size, size_of(temp_path));
  for (int hash_attempt = 0;; ++hash_attempt) {
    absl::Status status = transfer(file, temp_path, cancel);
    if (!status.ok()) {
      // Keep partial bytes for a later resume unless the disk is full (free the space) or the data is bad.
      std::error_code ec;
      if (absl::IsResourceExhausted(status) || absl::IsDataLoss(status)) fs::remove(temp_path, ec);
      return status;
    }
    // Every file is verified, a resumed or adopted one included: never accepted on its size alone.
    uint64_t size = size_of(temp_path);
    std::string problem;
    if (size != file.size) {
      problem = absl::StrCat("has ", size, " bytes where the hub listed ", file.size,
                             " (did the file change on the hub during the download?)");
    } else {
      absl::StatusOr<Digest> digest = digest_of(file, temp_path);
      if (!digest.ok()) return digest.status();
      if (digest->actual == digest->listed) break;
      problem = absl::StrCat("has ", digest->name, " ", digest->actual, " where the hub listed ", digest->listed);
    }
    std::remove(temp_path.c_str());
    tracker_.reset_file(file.path);
    if (hash_attempt + 1 >= hash_retries_) {
      return absl::DataLossError(
          absl::StrCat(file.path, " of ", session_.config().endpoint, " ", problem, " after ", hash_retries_,
                       " tries; the hub, a mirror or a proxy serves corrupt data: try again later or set ",
                       session_.config().endpoint_variable, " to another mirror"));
    }
  }
  tracker_.finish_file(file.path);
  absl::Status synced = fsync_path(temp_path);
  if (!synced.ok()) return synced;
  return temp_path;
}

absl::Status FileFetcher::transfer(const RemoteFile& file, const std::string& temp_path,
                                   const std::atomic<bool>* cancel) {
  int fd = open(temp_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create ", temp_path, ": ", std::strerror(errno)));
  }
  uint64_t offset = size_of(temp_path);
  absl::Status result = absl::OkStatus();
  for (int attempt = 1;; ++attempt) {
    if (offset >= file.size && file.size > 0) break;
    lseek(fd, static_cast<off_t>(offset), SEEK_SET);
    std::string write_error;
    bool first_chunk = true;
    std::string bad_range;
    BodySink sink = [&](const HttpResponse& head, std::string_view chunk) {
      long status = head.status;
      if (first_chunk) {
        first_chunk = false;
        // A 206 must continue at the byte asked for: anything else would be spliced in at the wrong place.
        if (status == 206 && !is_range_from(head.header("content-range"), offset, file.size)) {
          bad_range = head.header("content-range");
          write_error = "range";
          return false;
        }
        // A 200 to a ranged request is the whole file (hub-protocols §3.4): start over.
        if (status == 200 && offset > 0) {
          if (ftruncate(fd, 0) != 0) return false;
          lseek(fd, 0, SEEK_SET);
          tracker_.reset_file(file.path);
          offset = 0;
        }
      }
      if (offset + chunk.size() > file.size) {
        write_error = "changed";
        return false;
      }
      if (budget_.enabled) {
        uint64_t left = budget_.bytes_left.load();
        if (left < chunk.size()) {
          write_error = std::strerror(ENOSPC);
          return false;
        }
        budget_.bytes_left -= chunk.size();
      }
      const char* data = chunk.data();
      size_t remaining = chunk.size();
      while (remaining > 0) {
        ssize_t written = write(fd, data, remaining);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) {
          write_error = std::strerror(errno);
          return false;
        }
        data += written;
        remaining -= static_cast<size_t>(written);
      }
      offset += chunk.size();
      tracker_.add_bytes(file.path, chunk.size());
      return true;
    };
    absl::StatusOr<HttpResponse> response = session_.get_file_once(file.url, offset, sink, cancel);
    if (response.ok() && response->aborted_by_sink) {
      if (write_error == "range") {
        result = absl::DataLossError(absl::StrCat(
            file.path, " on ", session_.config().endpoint, ": asked for bytes from ", offset, " of ", file.size,
            ", the answer was 206 with Content-Range \"", absl::CHexEscape(bad_range.substr(0, 100)),
            "\"; the hub or a proxy on the way mangles ranges"));
      } else if (write_error == "changed") {
        result = absl::DataLossError(absl::StrCat(file.path, " on ", session_.config().endpoint,
                                                  " is larger than listed: it changed on the hub during the download; "
                                                  "run the download again"));
      } else {
        result = absl::ResourceExhaustedError(absl::StrCat("cannot write ", temp_path, ": ", write_error,
                                                           "; free some space and run the download again"));
      }
      break;
    }
    if (response.ok() && (response->status == 200 || response->status == 206)) {
      // 416: the range starts at the end, the bytes are all there.
      break;
    }
    if (response.ok() && response->status == 416 && offset == file.size) break;
    if (!response.ok() && absl::IsCancelled(response.status())) {
      result = response.status();
      break;
    }
    bool retryable = response.ok() ? HubSession::is_retryable_status(response->status)
                                   : HubSession::is_retryable_failure(response.status());
    if (!retryable) {
      result =
          response.ok() ? session_.error_for(*response, absl::StrCat(file.path, " of ", file.url)) : response.status();
      break;
    }
    if (attempt >= session_.retry_policy().max_attempts) {
      if (response.ok()) {
        result = session_.error_for(*response, file.path);
      } else if (absl::IsDeadlineExceeded(response.status())) {
        // Reachable but too slow (a trickling body): "unreachable" would send the user looking at the network.
        result = absl::DeadlineExceededError(absl::StrCat(
            file.path, " of ", session_.config().endpoint, ": ", response.status().message(), ", ", attempt,
            " times; try again later or set ", session_.config().endpoint_variable, " to a faster mirror"));
      } else {
        result = session_.unreachable(response.status());
      }
      break;
    }
    if (!HubSession::sleep_unless_cancelled(session_.backoff(attempt, response.ok() ? &*response : nullptr), cancel)) {
      result = absl::CancelledError("the download was cancelled");
      break;
    }
  }
  close(fd);
  return result;
}

}  // namespace bm::common
