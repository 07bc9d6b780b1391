#pragma once
#include <cstddef>
#include <cstdint>

namespace bm::common {

// Every bound on what a hub (or anyone on the path of an http:// one) can make a download spend (DESIGN §9).
// One place, so docs/limits-and-security.md quotes them from here.

// An API answer (revision info, one page of a tree, a ModelScope list) larger than this is refused.
inline constexpr uint64_t kMaxApiBodyBytes = uint64_t{64} << 20;
// Pages of one tree listing; a `Link: rel="next"` seen twice is a loop and refused at once.
inline constexpr int kMaxListingPages = 10000;
// Files in one snapshot.
inline constexpr size_t kMaxSnapshotFiles = 1000000;
// One file's listed size (4 TiB): larger is a lie, and with kMaxSnapshotFiles a sum cannot wrap 64 bits.
inline constexpr uint64_t kMaxFileBytes = uint64_t{1} << 42;
// Bytes of a repo-relative file name or a revision name.
inline constexpr size_t kMaxNameBytes = 4096;
// Nesting of a JSON answer (a tree page is 3 deep).
inline constexpr int kMaxJsonDepth = 64;
// Redirect hops of one request.
inline constexpr int kMaxRedirects = 10;
// A transfer slower than this on average over the window is abandoned (and retried from where it stopped):
// a body that trickles a byte now and then never ends a download otherwise.
inline constexpr long kMinBytesPerSecond = 1024;
inline constexpr long kRateWindowSeconds = 60;

// The limits one download runs under; tests lower them.
struct HubLimits {
  uint64_t max_api_body_bytes = kMaxApiBodyBytes;
  int max_listing_pages = kMaxListingPages;
  size_t max_snapshot_files = kMaxSnapshotFiles;
  uint64_t max_file_bytes = kMaxFileBytes;
};

}  // namespace bm::common
