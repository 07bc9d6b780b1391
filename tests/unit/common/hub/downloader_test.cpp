#include "common/hub/downloader.h"

#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "common/hub/file_lock.h"
#include "common/hub/hf_cache_layout.h"
#include "common/hub/sha256.h"
#include "tests/unit/common/hub/fake_hub_fixture.h"

namespace bm::common::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kRepo[] = "Qwen/Tiny-Model";
constexpr uint64_t kWeightBytes = 300000;

class DownloaderTest : public FakeHubTest {
 protected:
  std::string push_tiny() {
    return push(kRepo, {{"config.json", "{\"model_type\": \"qwen2\"}"},
                        {"model.safetensors", "size:300000:1"},
                        {"sub/tokenizer.json", "{\"tokens\": []}"}});
  }
  std::string repo_dir() const { return root_ + "/" + HfCacheLayout::repo_folder_name(kRepo); }
  std::vector<std::string> incomplete_files() const {
    std::vector<std::string> found;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->path().extension() == ".incomplete") found.push_back(it->path().string());
    }
    return found;
  }
  std::string incomplete_list() const {
    std::string out;
    for (const std::string& path : incomplete_files()) out += path + " ";
    return out;
  }
  void expect_complete_snapshot(const std::string& commit) {
    EXPECT_EQ(file_text(repo_dir() + "/refs/main"), commit);  // no trailing newline
    std::string snap = repo_dir() + "/snapshots/" + commit;
    ASSERT_TRUE(fs::is_symlink(snap + "/model.safetensors"));
    EXPECT_EQ(fs::read_symlink(snap + "/sub/tokenizer.json").string().rfind("../../../blobs/", 0), 0u);
    EXPECT_EQ(file_text(snap + "/config.json"), "{\"model_type\": \"qwen2\"}");
    EXPECT_EQ(fs::file_size(snap + "/model.safetensors"), kWeightBytes);
    EXPECT_TRUE(incomplete_files().empty()) << incomplete_list();
  }
};

TEST_F(DownloaderTest, FreshDownloadWritesTheHfCacheLayout) {
  std::string commit = push_tiny();
  std::vector<std::string> phases;
  absl::StatusOr<DownloadResult> result = download_snapshot(
      hf_options(kRepo), [&](const DownloadProgress& p) { phases.push_back(p.phase); }, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->commit, commit);
  EXPECT_EQ(result->files_total, 3u);
  EXPECT_EQ(result->files_fetched, 3u);
  EXPECT_EQ(result->snapshot_path, repo_dir() + "/snapshots/" + commit);
  expect_complete_snapshot(commit);
  // The blob of an LFS file is named by its sha256 and holds exactly that content.
  std::string link = fs::read_symlink(result->snapshot_path + "/model.safetensors").filename().string();
  EXPECT_EQ(*sha256_file(repo_dir() + "/blobs/" + link), link);
  EXPECT_TRUE(fs::exists(root_ + "/.locks/" + HfCacheLayout::repo_folder_name(kRepo) + "/" + link + ".lock"));
  EXPECT_EQ(phases.front(), "resolving");
  EXPECT_EQ(phases.back(), "done");
  // The token went to the hub, never to the CDN host.
  EXPECT_NE(stats_json().find("\"auth_leaks\": 0"), std::string::npos) << stats_json();
}

TEST_F(DownloaderTest, SecondDownloadIsUpToDateAndFetchesNothing) {
  push_tiny();
  ASSERT_TRUE(download_snapshot(hf_options(kRepo), nullptr, nullptr).ok());
  uint64_t served = bytes_served("model.safetensors");
  absl::StatusOr<DownloadResult> again = download_snapshot(hf_options(kRepo), nullptr, nullptr);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->up_to_date);
  EXPECT_EQ(again->files_fetched, 0u);
  EXPECT_EQ(bytes_served("model.safetensors"), served);
}

TEST_F(DownloaderTest, DroppedConnectionResumesWithRange) {
  std::string commit = push_tiny();
  set_faults(R"([{"path": "model.safetensors", "kind": "drop", "after": 100000, "times": 1}])");
  absl::StatusOr<DownloadResult> result = download_snapshot(hf_options(kRepo), nullptr, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  expect_complete_snapshot(commit);
  // Resumed where the connection dropped: every byte crossed the wire once.
  EXPECT_EQ(bytes_served("model.safetensors"), kWeightBytes);
  EXPECT_NE(stats_json().find("\"range\": \"bytes=100000-\""), std::string::npos) << stats_json();
}

TEST_F(DownloaderTest, OrphanPartialFileOfADeadProcessIsResumed) {
  push_tiny();
  // What a killed downloader leaves: a partial temp file next to the blob it was writing.
  ASSERT_TRUE(download_snapshot(hf_options(kRepo), nullptr, nullptr).ok());
  std::string link =
      fs::read_symlink(repo_dir() + "/snapshots/" + file_text(repo_dir() + "/refs/main") + "/model.safetensors")
          .filename()
          .string();
  std::string blob = repo_dir() + "/blobs/" + link;
  std::string orphan = blob + ".deadbeef.incomplete";
  fs::copy_file(blob, orphan);
  fs::resize_file(orphan, 120000);
  fs::remove(blob);
  uint64_t before = bytes_served("model.safetensors");
  absl::StatusOr<DownloadResult> result = download_snapshot(hf_options(kRepo), nullptr, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(bytes_served("model.safetensors") - before, kWeightBytes - 120000);
  EXPECT_EQ(*sha256_file(blob), link);
  EXPECT_TRUE(incomplete_files().empty()) << incomplete_list();
}

TEST_F(DownloaderTest, CorruptDataIsRetriedThenFailsClearly) {
  push_tiny();
  set_faults(R"([{"path": "model.safetensors", "kind": "corrupt", "times": -1}])");
  absl::StatusOr<DownloadResult> result = download_snapshot(hf_options(kRepo), nullptr, nullptr);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(result.status().message().find("sha256"), std::string::npos) << result.status();
  EXPECT_NE(result.status().message().find("HF_ENDPOINT"), std::string::npos);
  // Nothing of it became visible.
  EXPECT_FALSE(fs::exists(repo_dir() + "/refs/main"));
  EXPECT_TRUE(fs::is_empty(repo_dir() + "/snapshots"));
  EXPECT_TRUE(incomplete_files().empty()) << incomplete_list();
}

TEST_F(DownloaderTest, OneCorruptTransferIsRetried) {
  std::string commit = push_tiny();
  set_faults(R"([{"path": "model.safetensors", "kind": "corrupt", "times": 1}])");
  DownloadProgress last;
  absl::StatusOr<DownloadResult> result = download_snapshot(
      hf_options(kRepo), [&](const DownloadProgress& p) { last = p; }, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  expect_complete_snapshot(commit);
  // The discarded transfer is not counted twice.
  EXPECT_EQ(last.files_done, 3u);
  EXPECT_EQ(last.files_total, 3u);
  EXPECT_EQ(last.bytes_done, last.bytes_total);
  EXPECT_EQ(bytes_served("model.safetensors"), 2 * kWeightBytes);
}

TEST_F(DownloaderTest, FileChangedBetweenListingAndDownloadIsRejected) {
  push_tiny();
  set_faults(R"([{"path": "config.json", "kind": "changed", "times": -1}])");
  absl::StatusOr<DownloadResult> result = download_snapshot(hf_options(kRepo), nullptr, nullptr);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("changed"), std::string::npos) << result.status();
  EXPECT_FALSE(fs::exists(repo_dir() + "/refs/main"));
}

TEST_F(DownloaderTest, ServerErrorsRateLimitsAndStallsAreRetried) {
  std::string commit = push_tiny();
  set_faults(R"([{"path": "config.json", "kind": "status", "status": 503, "times": 2},
                 {"path": "tokenizer.json", "kind": "429", "seconds": 0, "times": 1},
                 {"path": "model.safetensors", "kind": "stall", "after": 50000, "seconds": 4, "times": 1},
                 {"path": "tree", "kind": "status", "status": 502, "times": 1}])");
  DownloadOptions options = hf_options(kRepo);
  options.timeouts.rate_window_seconds = 1;
  absl::StatusOr<DownloadResult> result = download_snapshot(options, nullptr, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  expect_complete_snapshot(commit);
  // The stalled transfer was abandoned and resumed after its first 50000 bytes.
  EXPECT_NE(stats_json().find("\"range\": \"bytes=50000-\""), std::string::npos) << stats_json();
  EXPECT_EQ(bytes_served("model.safetensors"), kWeightBytes);
}

TEST_F(DownloaderTest, MirrorAbsoluteRedirectIsFollowed) {
  std::string commit = push_tiny();
  set_faults(R"([{"path": "resolve:config.json", "kind": "mirror", "times": 1}])");
  absl::StatusOr<DownloadResult> result = download_snapshot(hf_options(kRepo), nullptr, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  expect_complete_snapshot(commit);
}

TEST_F(DownloaderTest, ConcurrentDownloadsOfOneModelNeverCorruptIt) {
  std::string commit = push_tiny();
  absl::StatusOr<DownloadResult> first, second;
  std::thread a([&] { first = download_snapshot(hf_options(kRepo), nullptr, nullptr); });
  std::thread b([&] { second = download_snapshot(hf_options(kRepo), nullptr, nullptr); });
  a.join();
  b.join();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  expect_complete_snapshot(commit);
  std::string link = fs::read_symlink(repo_dir() + "/snapshots/" + commit + "/model.safetensors").filename();
  EXPECT_EQ(*sha256_file(repo_dir() + "/blobs/" + link), link);
}

TEST_F(DownloaderTest, FullDiskFailsClearlyAndLeavesAHealthyCache) {
  push_tiny();
  DownloadOptions options = hf_options(kRepo);
  options.test_write_limit = 50000;
  absl::StatusOr<DownloadResult> result = download_snapshot(options, nullptr, nullptr);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted) << result.status();
  EXPECT_NE(result.status().message().find("free some space"), std::string::npos) << result.status();
  EXPECT_FALSE(fs::exists(repo_dir() + "/refs/main"));
  EXPECT_TRUE(fs::is_empty(repo_dir() + "/snapshots"));
  EXPECT_TRUE(incomplete_files().empty()) << incomplete_list();
  ASSERT_TRUE(download_snapshot(hf_options(kRepo), nullptr, nullptr).ok());
}

TEST_F(DownloaderTest, UpdateMovesToTheNewCommitAndDropsUnusedBlobs) {
  std::string old_commit = push_tiny();
  ASSERT_TRUE(download_snapshot(hf_options(kRepo), nullptr, nullptr).ok());
  std::string old_blob =
      fs::read_symlink(repo_dir() + "/snapshots/" + old_commit + "/model.safetensors").filename().string();
  std::string new_commit = push(kRepo, {{"config.json", "{\"model_type\": \"qwen2\"}"},
                                        {"model.safetensors", "size:300000:2"},
                                        {"generation_config.json", "{}"}});
  DownloadOptions options = hf_options(kRepo);
  options.drop_previous = true;
  absl::StatusOr<DownloadResult> result = download_snapshot(options, nullptr, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->previous_commit, old_commit);
  EXPECT_EQ(result->commit, new_commit);
  EXPECT_EQ(result->changed, std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(result->added, std::vector<std::string>{"generation_config.json"});
  EXPECT_EQ(result->removed, std::vector<std::string>{"sub/tokenizer.json"});
  EXPECT_EQ(result->files_fetched, 2u);  // config.json's blob is shared
  EXPECT_EQ(file_text(repo_dir() + "/refs/main"), new_commit);
  EXPECT_FALSE(fs::exists(repo_dir() + "/snapshots/" + old_commit));
  EXPECT_FALSE(fs::exists(repo_dir() + "/blobs/" + old_blob));
  EXPECT_GT(result->bytes_freed, kWeightBytes - 1);
  EXPECT_NE(result->message.find("updated"), std::string::npos) << result->message;
  absl::StatusOr<DownloadResult> again = download_snapshot(options, nullptr, nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->up_to_date) << again->message;
}

TEST_F(DownloaderTest, UnknownRepoAndBadTokenGiveOneSentence) {
  push_tiny();
  absl::StatusOr<DownloadResult> missing = download_snapshot(hf_options("Qwen/No-Such-Model"), nullptr, nullptr);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("--hub ms"), std::string::npos) << missing.status();
  DownloadOptions bad_token = hf_options(kRepo);
  bad_token.hub.token = "wrong";
  absl::StatusOr<DownloadResult> denied = download_snapshot(bad_token, nullptr, nullptr);
  ASSERT_FALSE(denied.ok());
  EXPECT_NE(denied.status().message().find("HF_TOKEN"), std::string::npos) << denied.status();
  EXPECT_FALSE(fs::exists(repo_dir()));
}

TEST_F(DownloaderTest, UnreachableHubNamesTheEndpointAndItsVariables) {
  DownloadOptions options = hf_options(kRepo);
  options.hub.endpoint = "http://127.0.0.1:1";  // nothing listens on port 1
  absl::StatusOr<DownloadResult> result = download_snapshot(options, nullptr, nullptr);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(result.status().message().find("http://127.0.0.1:1"), std::string::npos) << result.status();
  EXPECT_NE(result.status().message().find("HF_ENDPOINT"), std::string::npos);
  EXPECT_NE(result.status().message().find("HTTPS_PROXY"), std::string::npos);
}

TEST_F(DownloaderTest, CancelKeepsPartialDataForResume) {
  push_tiny();
  set_faults(R"([{"path": "model.safetensors", "kind": "stall", "after": 80000, "seconds": 30, "times": 1}])");
  std::atomic<bool> cancel{false};
  DownloadOptions options = hf_options(kRepo);
  absl::StatusOr<DownloadResult> result = download_snapshot(
      options,
      [&](const DownloadProgress& p) {
        if (p.bytes_done >= 80000) cancel = true;
      },
      &cancel);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(incomplete_files().empty());
  EXPECT_FALSE(fs::exists(repo_dir() + "/refs/main"));
}

TEST_F(DownloaderTest, LocalDirLayoutHasFilesAndMetadata) {
  std::string commit = push_tiny();
  DownloadOptions options = hf_options(kRepo);
  options.layout = StoreLayout::kHfLocalDir;
  options.root = work_ + "/store";
  absl::StatusOr<DownloadResult> result = download_snapshot(options, nullptr, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  std::string dir = work_ + "/store/" + kRepo;
  EXPECT_EQ(result->snapshot_path, dir);
  EXPECT_EQ(fs::file_size(dir + "/model.safetensors"), kWeightBytes);
  EXPECT_TRUE(fs::is_regular_file(dir + "/sub/tokenizer.json"));
  std::string metadata = file_text(dir + "/.cache/huggingface/download/model.safetensors.metadata");
  EXPECT_EQ(metadata.substr(0, 41), commit + "\n");
  EXPECT_EQ(file_text(dir + "/.cache/huggingface/.gitignore"), "*");
}

TEST_F(DownloaderTest, ModelScopeWritesTheSnapshotLayout) {
  push_tiny();
  DownloadOptions options = hf_options(kRepo);
  options.hub.kind = HubKind::kModelScope;
  options.hub.endpoint_variable = "MODELSCOPE_DOMAIN";
  options.layout = StoreLayout::kMsCache;
  options.root = work_ + "/modelscope";
  set_faults(R"([{"path": "model.safetensors", "kind": "drop", "after": 70000, "times": 1}])");
  absl::StatusOr<DownloadResult> result = download_snapshot(options, nullptr, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  std::string dir = work_ + "/modelscope/models/Qwen--Tiny-Model/snapshots/master";
  EXPECT_EQ(result->snapshot_path, dir);
  EXPECT_EQ(fs::file_size(dir + "/model.safetensors"), kWeightBytes);
  EXPECT_EQ(file_text(dir + "/config.json"), "{\"model_type\": \"qwen2\"}");
  EXPECT_EQ(bytes_served("model.safetensors"), kWeightBytes);
  absl::StatusOr<DownloadResult> again = download_snapshot(options, nullptr, nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->up_to_date);
}

TEST_F(DownloaderTest, HuggingfaceHubSeesTheDownloadAsCompleteOffline) {
  if (python().empty())
    GTEST_SKIP() << "no venv python (BMSERVER_PYTHON or .venv): huggingface_hub interop not checked";
  std::string commit = push_tiny();
  absl::StatusOr<DownloadResult> result = download_snapshot(hf_options(kRepo), nullptr, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  std::string output = run_python(
      "import huggingface_hub as h\n"
      "p = h.snapshot_download('Qwen/Tiny-Model', local_files_only=True)\n"
      "print('PATH', p)\n"
      "info = h.scan_cache_dir()\n"
      "print('WARNINGS', len(info.warnings))\n"
      "repo = [r for r in info.repos if r.repo_id == 'Qwen/Tiny-Model'][0]\n"
      "print('FILES', repo.nb_files, 'REFS', sorted(repo.refs))\n"
      "print('CONFIG', open(h.hf_hub_download('Qwen/Tiny-Model', 'config.json', "
      "local_files_only=True)).read())\n",
      {{"HF_HUB_CACHE", root_}, {"HF_HUB_OFFLINE", "1"}, {"HF_HOME", work_ + "/hf_home"}});
  EXPECT_NE(output.find("PATH " + result->snapshot_path), std::string::npos) << output;
  EXPECT_NE(output.find("WARNINGS 0"), std::string::npos) << output;
  EXPECT_NE(output.find("FILES 3 REFS ['main']"), std::string::npos) << output;
  EXPECT_NE(output.find("CONFIG {\"model_type\": \"qwen2\"}"), std::string::npos) << output;
  (void)commit;
}

TEST_F(DownloaderTest, ModelscopeReadsOurDownloadOffline) {
  if (python().empty()) GTEST_SKIP() << "no venv python (BMSERVER_PYTHON or .venv): modelscope interop not checked";
  push_tiny();
  DownloadOptions options = hf_options(kRepo);
  options.hub.kind = HubKind::kModelScope;
  options.layout = StoreLayout::kMsCache;
  options.root = work_ + "/modelscope";
  absl::StatusOr<DownloadResult> result = download_snapshot(options, nullptr, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  std::string output = run_python(
      "from modelscope import snapshot_download\n"
      "print('PATH', snapshot_download('Qwen/Tiny-Model', local_files_only=True))\n",
      {{"MODELSCOPE_CACHE", work_ + "/modelscope"}, {"HOME", work_}});
  EXPECT_NE(output.find("PATH " + result->snapshot_path), std::string::npos) << output;
}

}  // namespace
}  // namespace bm::common::testing

namespace bm::common::testing {
namespace {

TEST_F(DownloaderTest, WaitsForTheLockAPythonDownloaderHolds) {
  if (python().empty()) GTEST_SKIP() << "no venv python (BMSERVER_PYTHON or .venv): filelock interop not checked";
  push_tiny();
  std::string lock = root_ + "/.locks/" + HfCacheLayout::repo_folder_name(kRepo) + "/held.lock";
  fs::create_directories(fs::path(lock).parent_path());
  // Python holds the lock (huggingface_hub's filelock) until it sees the file `release`.
  std::string release = work_ + "/release";
  std::string ready = work_ + "/ready";
  std::thread holder([&] {
    run_python(
        "import filelock, os, time\n"
        "with filelock.FileLock('" +
            lock +
            "'):\n"
            "    open('" +
            ready +
            "', 'w').close()\n"
            "    while not os.path.exists('" +
            release + "'): time.sleep(0.02)\n",
        {});
  });
  for (int i = 0; i < 500 && !fs::exists(ready); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(fs::exists(ready));
  absl::StatusOr<FileLock> busy = FileLock::acquire(lock, std::chrono::milliseconds(200), nullptr);
  EXPECT_EQ(busy.status().code(), absl::StatusCode::kDeadlineExceeded) << busy.status();
  std::ofstream(release).close();
  holder.join();
  absl::StatusOr<FileLock> free_now = FileLock::acquire(lock, std::chrono::seconds(10), nullptr);
  EXPECT_TRUE(free_now.ok()) << free_now.status();
}

}  // namespace
}  // namespace bm::common::testing

namespace bm::common::testing {
namespace {

TEST_F(DownloaderTest, SmallTmpfsFailsUpFrontWithTheSpaceNeeded) {
  std::string small = work_ + "/small";
  fs::create_directories(small);
  // Needs CAP_SYS_ADMIN (root in a container); elsewhere the byte-limit test above covers a full disk.
  if (std::system(("mount -t tmpfs -o size=256k tmpfs " + small + " 2>/dev/null").c_str()) != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here";
  }
  push_tiny();
  DownloadOptions options = hf_options(kRepo);
  options.root = small;
  absl::StatusOr<DownloadResult> result = download_snapshot(options, nullptr, nullptr);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted) << result.status();
  EXPECT_NE(result.status().message().find("not enough disk space"), std::string::npos) << result.status();
  EXPECT_FALSE(fs::exists(small + "/" + HfCacheLayout::repo_folder_name(kRepo) + "/refs/main"));
  EXPECT_TRUE(incomplete_files().empty()) << incomplete_list();
  std::system(("umount " + small).c_str());
}

}  // namespace
}  // namespace bm::common::testing
