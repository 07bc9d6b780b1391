#include "common/identifier_checks.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace bm::common {
namespace {

using ::testing::HasSubstr;

TEST(IdentifierChecksTest, RevisionsOfEveryRealFormPass) {
  for (const char* ok :
       {"", "main", "master", "v1.0.2", "refs/pr/12", "release_2024-01", "0123456789abcdef0123456789abcdef01234567"})
    EXPECT_TRUE(check_revision(ok).ok()) << ok;
}

TEST(IdentifierChecksTest, RevisionsThatCouldLeaveTheRefsFolderAreRefusedWithTheValueNamed) {
  for (const char* bad : {"..", "../../etc/passwd", "main/../..", "/abs", "trailing/", "a//b", ".", "a/./b", "sp ace",
                          "new\nline", "back\\slash", "semi;colon"}) {
    absl::Status s = check_revision(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr("revision \"")) << bad;
  }
  EXPECT_THAT(std::string(check_revision("a\nb").message()), HasSubstr("a\\x0ab")) << "kept on one line";
  EXPECT_FALSE(check_revision(std::string(256, 'a')).ok());
  EXPECT_TRUE(check_revision(std::string(255, 'a')).ok());
}

TEST(IdentifierChecksTest, ClientPathsMustBeAbsoluteWithoutDotDot) {
  EXPECT_TRUE(check_client_path("/data/models", "--local-dir").ok());
  EXPECT_TRUE(check_client_path("/data/my..models/x", "--local-dir").ok()) << "'..' inside a name is fine";
  absl::Status relative = check_client_path("models", "--local-dir");
  EXPECT_TRUE(absl::IsInvalidArgument(relative));
  EXPECT_THAT(std::string(relative.message()), HasSubstr("--local-dir \"models\" is not an absolute path"));
  absl::Status up = check_client_path("/data/../etc", "model folder");
  EXPECT_THAT(std::string(up.message()), HasSubstr("model folder \"/data/../etc\" contains a '..' part"));
  EXPECT_FALSE(check_client_path("/data/..", "x").ok());
  EXPECT_FALSE(check_client_path("", "x").ok());
  EXPECT_FALSE(check_client_path("/a\tb", "x").ok());
  EXPECT_FALSE(check_client_path("/" + std::string(5000, 'a'), "x").ok());
}

}  // namespace
}  // namespace bm::common
