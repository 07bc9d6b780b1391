#include "daemon/instance_lock.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace bm::daemon {
namespace {

using ::testing::HasSubstr;

class InstanceLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "bm-lock-test-XXXXXX").string();
    dir_ = ::mkdtemp(pattern.data());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

// flock is per open file description: a second acquire in this process is refused like a second daemon.
TEST_F(InstanceLockTest, ASecondHolderIsRefusedWithTheFirstOnesPid) {
  absl::StatusOr<InstanceLock> first = InstanceLock::acquire(dir_);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<InstanceLock> second = InstanceLock::acquire(dir_);
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("pid " + std::to_string(::getpid())));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(dir_));
}

TEST_F(InstanceLockTest, ReleasedWhenTheHolderGoesAwayEvenWithoutUnwinding) {
  { ASSERT_TRUE(InstanceLock::acquire(dir_).ok()); }
  EXPECT_TRUE(InstanceLock::acquire(dir_).ok()) << "released by the destructor";
  // A holder that dies without running destructors (kill -9): the kernel drops the lock with its fd.
  pid_t child = ::fork();
  if (child == 0) {
    absl::StatusOr<InstanceLock> held = InstanceLock::acquire(dir_);
    ::_exit(held.ok() ? 0 : 1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(InstanceLock::acquire(dir_).ok());
}

TEST_F(InstanceLockTest, AnUnusableDirIsAnErrorNamingTheLockFile) {
  absl::StatusOr<InstanceLock> lock = InstanceLock::acquire(dir_ + "/missing");
  ASSERT_FALSE(lock.ok());
  EXPECT_THAT(std::string(lock.status().message()), HasSubstr(dir_ + "/missing/bmserverd.lock"));
}

}  // namespace
}  // namespace bm::daemon
