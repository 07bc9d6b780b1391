// A hub is not trusted (DESIGN §9, issue 14 §2): every field it lists that becomes a path, a size or a URL is
// checked, and a hostile or broken answer fails the download with one sentence naming the field, writing
// nothing outside the store. Each case arms tests/tools/fake_hub.py to answer one way it should not.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/hub/downloader.h"
#include "common/hub/git_blob_sha1.h"
#include "common/hub/hf_cache_layout.h"
#include "common/hub/layout_util.h"
#include "common/hub/sha256.h"
#include "tests/unit/common/hub/fake_hub_fixture.h"

namespace bm::common::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kRepo[] = "Qwen/Tiny-Model";
constexpr char kConfig[] = "{\"model_type\": \"qwen2\"}";
constexpr uint64_t kWeightBytes = 300000;

class HostileHubTest : public FakeHubTest {
 protected:
  void SetUp() override {
    FakeHubTest::SetUp();
    commit_ = push(
        kRepo,
        {{"config.json", kConfig}, {"model.safetensors", "size:300000:1"}, {"sub/tokenizer.json", "{\"tokens\": []}"}});
  }

  std::string repo_dir() const { return root_ + "/" + HfCacheLayout::repo_folder_name(kRepo); }

  // Everything under the test's folder that is neither the store nor the fake hub's port file.
  std::vector<std::string> written_outside_store() const {
    std::vector<std::string> found;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(work_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      std::string path = it->path().string();
      if (path == root_ || path.rfind(root_ + "/", 0) == 0 || path == work_ + "/port") continue;
      found.push_back(path);
    }
    return found;
  }

  // The download fails with exactly `message` and leaves nothing visible: no snapshot, no ref, nothing outside.
  void expect_refused(const DownloadOptions& options, absl::StatusCode code, const std::string& message) {
    absl::StatusOr<DownloadResult> result = download_snapshot(options, nullptr, nullptr);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), code) << result.status();
    EXPECT_EQ(result.status().message(), message);
    EXPECT_FALSE(fs::exists(repo_dir() + "/refs/main"));
    EXPECT_TRUE(!fs::exists(repo_dir() + "/snapshots") || fs::is_empty(repo_dir() + "/snapshots"));
    EXPECT_EQ(written_outside_store(), std::vector<std::string>{});
  }
  void expect_refused(absl::StatusCode code, const std::string& message) {
    expect_refused(hf_options(kRepo), code, message);
  }

  std::string lists(const std::string& file, const std::string& rest) const {
    return endpoint_ + " lists " + kRepo + " \"" + file + "\" with " + rest;
  }

  std::string commit_;
};

TEST_F(HostileHubTest, OidWithDotDotIsRefusedBeforeItBecomesABlobPath) {
  set_faults(R"([{"kind": "tree_entry", "path": "config.json", "set": {"oid": "../../../escaped"}}])");
  expect_refused(absl::StatusCode::kDataLoss,
                 lists("config.json", "\"oid\" \"../../../escaped\" that is not a 40-hex git blob sha1 (lower-case)"));
}

TEST_F(HostileHubTest, LfsOidThatIsNotASha256IsRefused) {
  set_faults(R"([{"kind": "tree_entry", "path": "model.safetensors",
                  "set": {"lfs": {"oid": "../blobs/x", "size": 300000}}}])");
  expect_refused(absl::StatusCode::kDataLoss,
                 lists("model.safetensors", "\"lfs.oid\" \"../blobs/x\" that is not a 64-hex sha256 (lower-case)"));
}

TEST_F(HostileHubTest, LfsThatIsNotAnObjectIsRefused) {
  set_faults(R"([{"kind": "tree_entry", "path": "model.safetensors", "set": {"lfs": "yes"}}])");
  expect_refused(absl::StatusCode::kDataLoss, lists("model.safetensors", "\"lfs\" \"yes\" that is not an object"));
}

TEST_F(HostileHubTest, RevisionShaThatIsNotACommitIsRefused) {
  set_faults(R"([{"kind": "revision_info", "set": {"sha": "../../escaped"}}])");
  expect_refused(absl::StatusCode::kDataLoss,
                 endpoint_ +
                     " gave \"sha\" \"../../escaped\" for Qwen/Tiny-Model@\"main\" where a 40-hex commit "
                     "belongs; is it a Hugging Face endpoint?");
}

TEST_F(HostileHubTest, RevisionWithDotDotIsRefusedBeforeAnyRequest) {
  DownloadOptions options = hf_options(kRepo);
  options.revision = "../../escaped";
  expect_refused(options, absl::StatusCode::kInvalidArgument,
                 "the revision \"../../escaped\" is not a branch, tag or commit name (no \"..\", no leading \"/\", no "
                 "control characters)");
  const nlohmann::json stats = nlohmann::json::parse(stats_json());  // a temporary would end before the loop runs
  for (const nlohmann::json& request : stats["requests"]) {
    EXPECT_EQ(request["path"].get<std::string>().rfind("/_control/", 0), 0u) << request.dump();
  }
}

TEST_F(HostileHubTest, NegativeSizeIsRefused) {
  set_faults(R"([{"kind": "tree_entry", "path": "config.json", "set": {"size": -5}}])");
  expect_refused(absl::StatusCode::kDataLoss, lists("config.json", "\"size\" \"-5\" that is negative"));
}

TEST_F(HostileHubTest, HugeSizeIsRefusedNotTakenToTheFreeSpaceCheck) {
  set_faults(R"([{"kind": "tree_entry", "path": "config.json", "set": {"size": 18446744073709551615}}])");
  expect_refused(
      absl::StatusCode::kDataLoss,
      lists("config.json", "\"size\" \"18446744073709551615\" above the 4398046511104-byte limit of one file"));
}

TEST_F(HostileHubTest, SizeThatIsAStringIsRefusedWithoutAnException) {
  set_faults(R"([{"kind": "tree_entry", "path": "config.json", "set": {"size": "23"}}])");
  expect_refused(absl::StatusCode::kDataLoss, lists("config.json", "\"size\" \"23\" that is not a byte count"));
}

TEST_F(HostileHubTest, MissingOidIsRefused) {
  set_faults(R"([{"kind": "tree_entry", "path": "config.json", "set": {"oid": null}}])");
  expect_refused(absl::StatusCode::kDataLoss, lists("config.json", "no \"oid\""));
}

TEST_F(HostileHubTest, NameWithDotDotIsRefused) {
  set_faults(R"([{"kind": "tree_entry", "path": "config.json", "set": {"path": "../escaped"}}])");
  expect_refused(
      absl::StatusCode::kDataLoss,
      endpoint_ + " lists " + kRepo + " tree entry 0 with \"path\" \"../escaped\" that is an unsafe file name");
}

TEST_F(HostileHubTest, AbsoluteNameIsRefused) {
  set_faults(R"([{"kind": "tree_entry", "path": "config.json", "set": {"path": "/tmp/escaped"}}])");
  expect_refused(
      absl::StatusCode::kDataLoss,
      endpoint_ + " lists " + kRepo + " tree entry 0 with \"path\" \"/tmp/escaped\" that is an unsafe file name");
}

TEST_F(HostileHubTest, FileListedTwiceIsRefused) {
  set_faults(R"([{"kind": "tree_entry", "path": "config.json", "set": {"path": "model.safetensors"}}])");
  expect_refused(absl::StatusCode::kDataLoss, endpoint_ + " lists " + kRepo + " \"model.safetensors\" twice");
}

TEST_F(HostileHubTest, FileThatIsAlsoAFolderIsRefused) {
  set_faults(R"([{"kind": "tree_entry", "path": "config.json", "set": {"path": "sub"}}])");
  expect_refused(absl::StatusCode::kDataLoss,
                 endpoint_ + " lists " + kRepo + " \"sub\" both as a file and as the folder of \"sub/tokenizer.json\"");
}

TEST_F(HostileHubTest, RedirectToAnotherOriginDoesNotCarryTheToken) {
  // Same host, another port: a hand parser comparing hosts sends the token there.
  set_faults(R"([{"kind": "redirect", "path": "resolve:config.json", "times": -1,
                  "location": "http://127.0.0.1:{other}/_cdn/{repo}/{sha}/{file}"}])");
  absl::StatusOr<DownloadResult> result = download_snapshot(hf_options(kRepo), nullptr, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  nlohmann::json stats = nlohmann::json::parse(stats_json());
  EXPECT_EQ(stats["auth_leaks"], 0) << stats.dump();
  EXPECT_EQ(file_text(result->snapshot_path + "/config.json"), kConfig);
}

TEST_F(HostileHubTest, FileRedirectIsRefused) {
  set_faults(R"([{"kind": "redirect", "path": "resolve:config.json", "times": -1, "location": "file:///etc/passwd"}])");
  expect_refused(absl::StatusCode::kDataLoss, endpoint_ + " redirected " + endpoint_ + "/" + kRepo + "/resolve/" +
                                                  commit_ +
                                                  "/config.json to \"file:///etc/passwd\"; only http and https "
                                                  "redirects are followed");
}

TEST_F(HostileHubTest, PaginationLoopIsRefused) {
  set_faults(R"([{"kind": "tree_link", "mode": "loop"}])");
  std::string first = endpoint_ + "/api/models/" + kRepo + "/tree/" + commit_ + "?recursive=True&expand=False&cursor=0";
  // The fake hub names itself by the Host header it was sent: the endpoint's host and port.
  expect_refused(absl::StatusCode::kDataLoss,
                 endpoint_ + "'s tree of " + kRepo + " pages in a loop (back to " + first + ")");
}

TEST_F(HostileHubTest, EndlessPaginationStopsAtThePageCap) {
  set_faults(R"([{"kind": "tree_link", "mode": "endless"}])");
  DownloadOptions options = hf_options(kRepo);
  options.limits.max_listing_pages = 5;
  expect_refused(options, absl::StatusCode::kDataLoss, endpoint_ + "'s tree of " + kRepo + " has more than 5 pages");
}

TEST_F(HostileHubTest, OversizedApiAnswerIsRefused) {
  set_faults(R"([{"kind": "tree_raw", "body": "[)" + std::string(5000, ' ') + R"(]"}])");
  DownloadOptions options = hf_options(kRepo);
  options.limits.max_api_body_bytes = 4096;
  expect_refused(options, absl::StatusCode::kDataLoss,
                 endpoint_ + "'s answer about " + kRepo +
                     " is larger than 4096 bytes (the cap on hub API answers); is HF_ENDPOINT a hub?");
}

TEST_F(HostileHubTest, DeeplyNestedAnswerIsRefused) {
  set_faults(R"([{"kind": "tree_raw", "body": ")" + std::string(100, '[') + std::string(100, ']') + R"("}])");
  expect_refused(absl::StatusCode::kDataLoss, endpoint_ + "'s tree of " + kRepo + " nests deeper than 64 levels");
}

TEST_F(HostileHubTest, TricklingBodyIsAbandoned) {
  set_faults(R"([{"kind": "trickle", "path": "model.safetensors", "bytes": 64, "interval": 0.1, "times": -1}])");
  DownloadOptions options = hf_options(kRepo);
  options.timeouts.min_bytes_per_second = 4096;
  options.timeouts.rate_window_seconds = 1;
  options.retry.max_attempts = 2;
  absl::StatusOr<DownloadResult> result = download_snapshot(options, nullptr, nullptr);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded) << result.status();
  // The body came from the "CDN" (another host name) after the hub's redirect.
  std::string message(result.status().message());
  EXPECT_EQ(message.substr(0, message.find(" ran slower"))
                .rfind("model.safetensors of " + endpoint_ + ": the transfer from http://localhost:", 0),
            0u)
      << message;
  EXPECT_NE(message.find(" ran slower than 4096 bytes/s for 1 s, 2 times; try again later or set HF_ENDPOINT to a "
                         "faster mirror"),
            std::string::npos)
      << message;
  EXPECT_FALSE(fs::exists(repo_dir() + "/refs/main"));
  EXPECT_EQ(written_outside_store(), std::vector<std::string>{});
}

TEST_F(HostileHubTest, WrongGitBlobSha1OfANonLfsFileIsRetriedThenRefused) {
  // Same size, one byte flipped: before, a non-LFS file was accepted on its size.
  set_faults(R"([{"path": "config.json", "kind": "corrupt", "times": -1}])");
  std::string corrupt = kConfig;
  corrupt[0] = static_cast<char>(corrupt[0] ^ 0xFF);
  expect_refused(absl::StatusCode::kDataLoss,
                 "config.json of " + endpoint_ + " has git blob sha1 " + git_blob_sha1_hex(corrupt) +
                     " where the hub listed " + git_blob_sha1_hex(kConfig) +
                     " after 3 tries; the hub, a mirror or a proxy serves corrupt data: try again later or set "
                     "HF_ENDPOINT to another mirror");
}

TEST_F(HostileHubTest, OneCorruptNonLfsTransferIsRetried) {
  set_faults(R"([{"path": "config.json", "kind": "corrupt", "times": 1}])");
  absl::StatusOr<DownloadResult> result = download_snapshot(hf_options(kRepo), nullptr, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(file_text(result->snapshot_path + "/config.json"), kConfig);
}

TEST_F(HostileHubTest, PartialContentFromTheWrongOffsetIsRefused) {
  set_faults(R"([{"kind": "badrange", "path": "model.safetensors", "shift": 100, "times": -1}])");
  expect_refused(absl::StatusCode::kDataLoss,
                 "model.safetensors on " + endpoint_ +
                     ": asked for bytes from 0 of 300000, the answer was 206 with Content-Range \"bytes "
                     "100-299999/300000\"; the hub or a proxy on the way mangles ranges");
}

TEST_F(HostileHubTest, FullSizeOrphanWithWrongContentIsVerifiedAndRefetched) {
  // What a dead process (or anyone who can write the cache) leaves: a temp file of the right size, wrong bytes.
  std::string blob = repo_dir() + "/blobs/" + git_blob_sha1_hex(kConfig);
  fs::create_directories(repo_dir() + "/blobs");
  std::ofstream(blob + ".deadbeef.incomplete") << std::string(std::string(kConfig).size(), 'x');
  absl::StatusOr<DownloadResult> result = download_snapshot(hf_options(kRepo), nullptr, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(file_text(blob), kConfig);
  EXPECT_EQ(file_text(result->snapshot_path + "/config.json"), kConfig);
}

TEST_F(HostileHubTest, ModelScopeSha256ThatIsNotHexIsRefused) {
  DownloadOptions options = hf_options(kRepo);
  options.hub.kind = HubKind::kModelScope;
  options.layout = StoreLayout::kMsCache;
  options.root = root_ + "/modelscope";
  set_faults(R"([{"kind": "ms_entry", "path": "config.json", "set": {"Sha256": "../../../escaped"}}])");
  expect_refused(options, absl::StatusCode::kDataLoss,
                 lists("config.json", "\"Sha256\" \"../../../escaped\" that is not a 64-hex sha256 (lower-case)"));
  set_faults(R"([{"kind": "ms_entry", "path": "config.json", "set": {"Sha256": null}}])");
  expect_refused(options, absl::StatusCode::kDataLoss, lists("config.json", "no \"Sha256\""));
  set_faults(R"([{"kind": "ms_entry", "path": "config.json", "set": {"Path": "a/../../escaped"}}])");
  expect_refused(
      options, absl::StatusCode::kDataLoss,
      endpoint_ + " lists " + kRepo + " file entry 0 with \"Path\" \"a/../../escaped\" that is an unsafe file name");
}

TEST_F(HostileHubTest, StoreFilesGetTheirModeWithoutTouchingTheUmask) {
  mode_t old = umask(027);
  EXPECT_EQ(process_umask(), 027u);
  absl::StatusOr<DownloadResult> result = download_snapshot(hf_options(kRepo), nullptr, nullptr);
  EXPECT_EQ(umask(old), 027u);
  ASSERT_TRUE(result.ok()) << result.status();
  struct stat info {};
  ASSERT_EQ(stat((repo_dir() + "/blobs/" + git_blob_sha1_hex(kConfig)).c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0640u);
}

TEST_F(HostileHubTest, RemovalIsRefusedWhileADownloadHoldsTheRepo) {
  set_faults(R"([{"path": "model.safetensors", "kind": "stall", "after": 80000, "seconds": 30, "times": 1}])");
  std::atomic<bool> cancel{false};
  std::atomic<bool> partial{false};
  absl::StatusOr<DownloadResult> result;
  std::thread download([&] {
    result = download_snapshot(
        hf_options(kRepo),
        [&](const DownloadProgress& p) {
          if (p.bytes_done >= 80000) partial = true;
        },
        &cancel);
  });
  for (int i = 0; i < 500 && !partial; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(partial);
  absl::StatusOr<FileLock> busy = lock_for_removal(hf_options(kRepo));
  EXPECT_EQ(busy.status().code(), absl::StatusCode::kFailedPrecondition) << busy.status();
  EXPECT_EQ(busy.status().message(),
            "Qwen/Tiny-Model is being downloaded; stop that download (Ctrl-C in its `bmserver chat download`) or let "
            "it finish, then remove it");
  cancel = true;
  download.join();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  absl::StatusOr<FileLock> free_now = lock_for_removal(hf_options(kRepo));
  EXPECT_TRUE(free_now.ok()) << free_now.status();
}

TEST_F(HostileHubTest, ADownloadWaitsForARemovalToFinish) {
  absl::StatusOr<FileLock> removal = lock_for_removal(hf_options(kRepo));
  ASSERT_TRUE(removal.ok()) << removal.status();
  DownloadOptions options = hf_options(kRepo);
  options.lock_timeout = std::chrono::milliseconds(300);
  absl::StatusOr<DownloadResult> blocked = download_snapshot(options, nullptr, nullptr);
  EXPECT_EQ(blocked.status().code(), absl::StatusCode::kDeadlineExceeded) << blocked.status();
  EXPECT_FALSE(fs::exists(repo_dir() + "/blobs"));
  *removal = FileLock();
  EXPECT_TRUE(download_snapshot(options, nullptr, nullptr).ok());
}

}  // namespace
}  // namespace bm::common::testing
