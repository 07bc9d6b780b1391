// libFuzzer target for what a hub answers: arbitrary bytes as HF revision info, an HF tree page, a ModelScope
// revision list or file list -> the validated download plan. Checks, besides "no crash, no exception": every
// file that comes out has a safe name, exactly one well-formed digest that is also its store name, a bounded
// size; and once the plan validates, every path the three store layouts derive from it stays inside the store.
//
// Input: byte 0 picks the parser, the rest is the body.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/hub/hf_cache_layout.h"
#include "common/hub/hf_local_dir_layout.h"
#include "common/hub/hub_listing.h"
#include "common/hub/ms_cache_layout.h"

namespace {

namespace fs = std::filesystem;
using bm::common::RemoteFile;

constexpr char kRoot[] = "/store/root";

void require(bool ok, const char* what, const std::string& detail = "") {
  if (!ok) {
    std::fprintf(stderr, "hub_listing_fuzz: %s %s\n", what, detail.c_str());
    std::abort();
  }
}

void require_inside(const std::string& path, const std::string& root) {
  std::string normal = fs::path(path).lexically_normal().string();
  require(normal.rfind(root + "/", 0) == 0, "a store path escapes the store:", path);
}

void check_file(const RemoteFile& file, const bm::common::ListingSource& source) {
  require(bm::common::is_safe_repo_path(file.path), "unsafe path accepted:", file.path);
  require(file.size <= source.limits.max_file_bytes, "size above the limit accepted:", file.path);
  bool by_sha256 = bm::common::is_hex_digest(file.sha256, 64) && file.git_sha1.empty() && file.etag == file.sha256;
  bool by_sha1 = bm::common::is_hex_digest(file.git_sha1, 40) && file.sha256.empty() && file.etag == file.git_sha1;
  require(by_sha256 != by_sha1, "a file without exactly one valid digest:", file.path);
}

void check_layouts(const bm::common::RemoteSnapshot& snapshot) {
  bm::common::HfCacheLayout hf(kRoot, snapshot.repo_id);
  bm::common::HfLocalDirLayout local(kRoot, snapshot.repo_id);
  bm::common::MsCacheLayout ms(kRoot, snapshot.repo_id);
  for (const bm::common::SnapshotLayout* layout :
       std::initializer_list<const bm::common::SnapshotLayout*>{&hf, &local, &ms}) {
    require_inside(layout->repo_lock_path(), kRoot);
    for (const RemoteFile& file : snapshot.files) {
      require_inside(layout->temp_prefix(file), kRoot);
      require_inside(layout->lock_path(file), kRoot);
      require_inside(local.snapshot_path() + "/" + file.path, local.snapshot_path());
    }
  }
  require_inside(hf.snapshot_path(), kRoot);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  bm::common::ListingSource source{"https://hub.example", "org/name", bm::common::HubLimits{}};
  source.limits.max_snapshot_files = 1000;
  bm::common::RemoteSnapshot snapshot;
  snapshot.repo_id = source.repo_id;
  snapshot.commit = "0123456789abcdef0123456789abcdef01234567";
  absl::Status status;
  switch (data[0] % 4) {
    case 0: {
      absl::StatusOr<std::string> commit = bm::common::parse_hf_revision_info(body, source, "main");
      if (commit.ok()) require(bm::common::is_hex_digest(*commit, 40), "a commit that is not 40-hex:", *commit);
      return 0;
    }
    case 1:
      status = bm::common::parse_hf_tree_page(body, source, &snapshot.files);
      break;
    case 2: {
      (void)bm::common::parse_ms_revisions(body, source, "master");
      return 0;
    }
    case 3:
      snapshot.commit = "master";
      status = bm::common::parse_ms_file_list(body, source, &snapshot.files);
      break;
  }
  if (!status.ok()) {
    require(!status.message().empty(), "an error without a sentence");
    return 0;
  }
  require(snapshot.files.size() <= source.limits.max_snapshot_files, "more files than the limit");
  for (const RemoteFile& file : snapshot.files) check_file(file, source);
  if (!bm::common::validate_snapshot(snapshot, source).ok()) return 0;
  std::set<std::string> paths;
  for (const RemoteFile& file : snapshot.files) require(paths.insert(file.path).second, "a path twice:", file.path);
  check_layouts(snapshot);
  return 0;
}
