#include "common/atomic_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/common/temp_tree.h"

namespace bm::common {
namespace {

std::string read(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

mode_t mode_of(const std::filesystem::path& path) {
  struct stat st {};
  ::stat(path.c_str(), &st);
  return st.st_mode & 0777;
}

TEST(AtomicFileTest, WritesTheContentWithExactlyTheModeAskedRegardlessOfTheUmask) {
  testing::TempTree tree;
  std::filesystem::path path = tree.root() / "served.json";
  mode_t old_mask = ::umask(0);  // a umask of 0 would leave a plain open() at 0666
  absl::Status s = write_file_atomically(path.string(), "{\"a\": 1}\n", 0600);
  ::umask(old_mask);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(read(path), "{\"a\": 1}\n");
  EXPECT_EQ(mode_of(path), 0600u);
}

TEST(AtomicFileTest, ReplacesAnOpenFileWithoutTouchingWhatAReaderAlreadyHolds) {
  testing::TempTree tree;
  std::filesystem::path path = tree.write("state.json", "old");
  std::ifstream reader(path, std::ios::binary);  // opened before the write: keeps the old inode
  ASSERT_TRUE(write_file_atomically(path.string(), "new content").ok());
  std::stringstream held;
  held << reader.rdbuf();
  EXPECT_EQ(held.str(), "old");
  EXPECT_EQ(read(path), "new content");
}

TEST(AtomicFileTest, LeavesNoTempFileBehind) {
  testing::TempTree tree;
  std::filesystem::path path = tree.root() / "a.json";
  ASSERT_TRUE(write_file_atomically(path.string(), "1").ok());
  ASSERT_TRUE(write_file_atomically(path.string(), "2").ok());
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(tree.root()))
    names.push_back(entry.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"a.json"});
}

TEST(AtomicFileTest, AMissingDirectoryIsAnErrorNamingThePathAndChangesNothing) {
  testing::TempTree tree;
  std::string path = (tree.root() / "missing" / "a.json").string();
  absl::Status s = write_file_atomically(path, "x");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find(path), std::string::npos) << s;
  EXPECT_FALSE(std::filesystem::exists(tree.root() / "missing"));
}

TEST(AtomicFileTest, AnUnwritableDirectoryLeavesTheOldFileIntact) {
  if (::geteuid() == 0) GTEST_SKIP() << "root writes anywhere";
  testing::TempTree tree;
  std::filesystem::path path = tree.write("dir/a.json", "old");
  std::filesystem::permissions(tree.root() / "dir",
                               std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
  absl::Status s = write_file_atomically(path.string(), "new");
  std::filesystem::permissions(tree.root() / "dir", std::filesystem::perms::owner_all);
  EXPECT_TRUE(absl::IsPermissionDenied(s)) << s;
  EXPECT_EQ(read(path), "old");
}

TEST(AtomicFileTest, ConcurrentWritersAlwaysLeaveOneWholeVersion) {
  testing::TempTree tree;
  std::string path = (tree.root() / "s.json").string();
  std::vector<std::thread> writers;
  for (int t = 0; t < 8; ++t)
    writers.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) ASSERT_TRUE(write_file_atomically(path, std::string(1000 + t, 'a' + t)).ok());
    });
  for (std::thread& w : writers) w.join();
  std::string content = read(path);
  ASSERT_GE(content.size(), 1000u);
  EXPECT_EQ(content, std::string(content.size(), content[0])) << "a torn or interleaved write";
  EXPECT_EQ(content.size(), 1000u + static_cast<size_t>(content[0] - 'a'));
}

}  // namespace
}  // namespace bm::common
