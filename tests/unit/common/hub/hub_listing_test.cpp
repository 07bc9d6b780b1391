#include "common/hub/hub_listing.h"

#include <gtest/gtest.h>

#include "common/hub/git_blob_sha1.h"
#include "common/hub/hub_session.h"

namespace bm::common {
namespace {

ListingSource source() {
  return ListingSource{"https://hub.example", "org/name", HubLimits{}};
}

TEST(GitBlobSha1Test, MatchesGitHashObject) {
  // `git hash-object` of an empty file and of "hello\n".
  EXPECT_EQ(git_blob_sha1_hex(""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
  EXPECT_EQ(git_blob_sha1_hex("hello\n"), "ce013625030ba8dba906f756967f9e9ca394464a");
}

TEST(HubListingTest, HfTreePageGivesEachFileOneDigest) {
  std::vector<RemoteFile> files;
  std::string sha256(64, 'a');
  ASSERT_TRUE(parse_hf_tree_page(R"([{"type": "directory", "oid": "x", "path": "sub"},
      {"type": "file", "oid": "ce013625030ba8dba906f756967f9e9ca394464a", "size": 6, "path": "sub/a.txt"},
      {"type": "file", "oid": "ce013625030ba8dba906f756967f9e9ca394464a", "size": 134, "path": "w.bin",
       "lfs": {"oid": ")" + sha256 + R"(", "size": 1000, "pointerSize": 134}}])",
                                 source(), &files)
                  .ok());
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].git_sha1, "ce013625030ba8dba906f756967f9e9ca394464a");
  EXPECT_EQ(files[0].etag, files[0].git_sha1);
  EXPECT_EQ(files[0].sha256, "");
  EXPECT_EQ(files[1].sha256, sha256);
  EXPECT_EQ(files[1].etag, sha256);
  EXPECT_EQ(files[1].git_sha1, "");
  EXPECT_EQ(files[1].size, 1000u);
}

TEST(HubListingTest, MalformedAnswersAreDataLossNotExceptions) {
  // Shapes that made nlohmann's value() throw (and so took the daemon down) or slipped through.
  for (const char* body : {"", "{", "null", "{}", "[1]", "[null]", R"([{"type": 5}])", R"([{"type": "file"}])",
                           R"([{"type": "file", "path": 5}])", R"([{"type": "file", "path": "a", "oid": 5}])",
                           R"([{"type": "file", "path": "a", "oid": "ce013625030ba8dba906f756967f9e9ca394464a"}])",
                           R"([{"type": "file", "path": "a", "oid": "ce013625030ba8dba906f756967f9e9ca394464a",
                               "size": 1.5}])",
                           R"([{"type": "file", "path": "a", "oid": "CE013625030BA8DBA906F756967F9E9CA394464A",
                               "size": 1}])",
                           R"([{"type": "file", "path": "a\u0000b", "oid": "ce013625030ba8dba906f756967f9e9ca394464a",
                               "size": 1}])",
                           R"([{"type": "file", "path": "a", "lfs": [], "size": 1}])"}) {
    std::vector<RemoteFile> files;
    absl::Status status = parse_hf_tree_page(body, source(), &files);
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << body << " -> " << status;
    EXPECT_TRUE(files.empty()) << body;
  }
  for (const char* body : {"", "[]", R"({"sha": 5})", R"({"sha": "main"})", R"({"sha": ["x"]})"}) {
    EXPECT_EQ(parse_hf_revision_info(body, source(), "main").status().code(), absl::StatusCode::kDataLoss) << body;
  }
  for (const char* body : {R"({"Success": "yes", "Data": {}})", R"({"Code": "200", "Data": {}})", R"({"Data": 5})"}) {
    EXPECT_FALSE(parse_ms_revisions(body, source(), "master").ok()) << body;
  }
  for (const char* body :
       {R"({"Success": true, "Data": {"Files": {}}})", R"({"Success": true, "Data": {"Files": [5]}})",
        R"({"Success": true, "Data": {"Files": [{"Type": "blob", "Path": "a", "Size": -1,
                                                 "Sha256": ""}]}})"}) {
    std::vector<RemoteFile> files;
    EXPECT_EQ(parse_ms_file_list(body, source(), &files).code(), absl::StatusCode::kDataLoss) << body;
  }
}

TEST(HubListingTest, ModelScopeRevisionsAndEnvelope) {
  EXPECT_TRUE(*parse_ms_revisions(
      R"({"Code": 200, "Data": {"RevisionMap": {"Branches": [{"Revision": "master"}], "Tags": [5, {"Revision": 7}]}}})",
      source(), "master"));
  EXPECT_FALSE(*parse_ms_revisions(R"({"Success": true, "Data": {"Tags": [{"Revision": "v1"}]}})", source(), "v2"));
  absl::StatusOr<bool> refused = parse_ms_revisions(R"({"Success": false, "Message": "no such model"})", source(), "x");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(refused.status().message(), "https://hub.example refused org/name: \"no such model\"");
}

TEST(HubListingTest, TooManyFilesAreRefused) {
  ListingSource small = source();
  small.limits.max_snapshot_files = 1;
  std::vector<RemoteFile> files;
  std::string entry = R"({"type": "file", "oid": "ce013625030ba8dba906f756967f9e9ca394464a", "size": 6, "path": ")";
  absl::Status status = parse_hf_tree_page("[" + entry + "a\"}, " + entry + "b\"}]", small, &files);
  EXPECT_EQ(status.message(), "https://hub.example lists more than 1 files for org/name");
}

TEST(HubListingTest, TotalBytesSaturatesInsteadOfWrapping) {
  RemoteSnapshot snapshot;
  snapshot.files.resize(2);
  snapshot.files[0].size = UINT64_MAX - 1;
  snapshot.files[1].size = 5;
  EXPECT_EQ(snapshot.total_bytes(), UINT64_MAX);
}

TEST(HubListingTest, SafeNamesAndRevisions) {
  EXPECT_TRUE(is_safe_repo_path("a/b.json"));
  EXPECT_TRUE(is_safe_repo_path("a..b/c"));
  for (const char* bad : {"", ".", "..", "../x", "a/../b", "a/./b", "/abs", "a//b", "a/", "a\\b", "a\nb", "\x7f"}) {
    EXPECT_FALSE(is_safe_repo_path(bad)) << bad;
  }
  EXPECT_FALSE(is_safe_repo_path(std::string(kMaxNameBytes + 1, 'a')));
  EXPECT_TRUE(is_safe_revision("refs/pr/1"));
  EXPECT_FALSE(is_safe_revision("../../etc"));
  EXPECT_TRUE(is_hex_digest(std::string(64, 'f'), 64));
  EXPECT_FALSE(is_hex_digest(std::string(64, 'F'), 64));
  EXPECT_FALSE(is_hex_digest(std::string(63, 'f'), 64));
}

TEST(HubSessionTest, CredentialsGoOnlyToTheEndpointsOrigin) {
  HubConfig config;
  config.kind = HubKind::kHuggingFace;
  config.endpoint = "https://hub.example";
  struct Case {
    const char* url;
    bool sent;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"https://hub.example/api/x", true},
           {"https://HUB.example:443/x", true},
           {"http://hub.example/x", false},        // downgraded to http
           {"https://hub.example:8443/x", false},  // another port, another service
           {"https://hub.example.evil.com/x", false},
           {"https://hub.example@evil.com/x", false},  // user info, not the host
           {"https://evil.com/?https://hub.example/", false},
           {"https://evil.com\\@hub.example/", true},  // user "evil.com\": libcurl connects to hub.example
           {"file:///etc/passwd", false},
           {"https://huggingface.co/x", false},  // a mirror's redirect to another host, even the Hub
           {"http://huggingface.co/x", false},
           {"not a url", false},
       }) {
    EXPECT_EQ(may_send_credentials(config, c.url), c.sent) << c.url;
  }
  config.kind = HubKind::kModelScope;
  EXPECT_FALSE(may_send_credentials(config, "https://huggingface.co/x"));
}

TEST(HttpClientTest, RedirectTargetsResolveLikeLibcurl) {
  EXPECT_EQ(*resolve_url_reference("http://h:1/a/b?q", "/c"), "http://h:1/c");
  EXPECT_EQ(*resolve_url_reference("http://h:1/a/b?q", "c?d"), "http://h:1/a/c?d");
  EXPECT_EQ(*resolve_url_reference("http://h:1/a/b", "https://x/y"), "https://x/y");
  EXPECT_EQ(parse_url(*resolve_url_reference("http://h/a", "file:///etc/passwd"))->scheme, "file");
  EXPECT_FALSE(parse_url("").ok());
}

}  // namespace
}  // namespace bm::common
