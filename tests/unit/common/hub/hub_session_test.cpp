#include "common/hub/hub_session.h"

#include <gtest/gtest.h>

#include "common/hub/hf_api.h"
#include "common/hub/sha256.h"

namespace bm::common {
namespace {

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(HfApiTest, NextLinkAndSafePaths) {
  EXPECT_EQ(next_link("<https://h/api/x?cursor=2>; rel=\"next\""), "https://h/api/x?cursor=2");
  EXPECT_EQ(next_link("<https://h/a>; rel=\"prev\""), "");
  EXPECT_TRUE(is_safe_repo_path("a/b.json"));
  EXPECT_FALSE(is_safe_repo_path("../etc/passwd"));
  EXPECT_FALSE(is_safe_repo_path("/abs"));
  EXPECT_FALSE(is_safe_repo_path("a//b"));
  EXPECT_TRUE(is_commit_sha("0123456789abcdef0123456789abcdef01234567"));
  EXPECT_FALSE(is_commit_sha("main"));
}

TEST(HubSessionTest, ErrorsNameTheCauseAndTheFix) {
  HubConfig config = hf_config_from_env();
  config.endpoint = "https://hub.example";
  HubSession session(config);
  HttpResponse gated;
  gated.status = 401;
  gated.headers.emplace("x-error-code", "GatedRepo");
  EXPECT_NE(session.error_for(gated, "Qwen/X").message().find("HF_TOKEN"), std::string::npos);
  HttpResponse missing;
  missing.status = 404;
  missing.headers.emplace("x-error-code", "RepoNotFound");
  absl::Status status = session.error_for(missing, "Qwen/X");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(status.message().find("--hub ms"), std::string::npos);
  HttpResponse busy;
  busy.status = 429;
  busy.headers.emplace("retry-after", "3");
  EXPECT_EQ(session.backoff(1, &busy), std::chrono::seconds(3));
}

TEST(HttpClientTest, UrlHelpers) {
  EXPECT_EQ(url_origin("https://h.co:8/a/b?c"), "https://h.co:8");
  EXPECT_EQ(url_origin("https://h.co/a"), "https://h.co:443");
  EXPECT_EQ(parse_url("http://u@LocalHost:8/x")->host, "localhost");
  EXPECT_EQ(url_escape("a b/c", true), "a%20b/c");
}

}  // namespace
}  // namespace bm::common
