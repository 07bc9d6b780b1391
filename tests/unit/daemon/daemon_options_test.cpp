#include "daemon/daemon_options.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace bm::daemon {
namespace {

namespace fs = std::filesystem;

class DaemonOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bm-opts-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    for (const char* var : {"BMSERVER_LISTEN", "BMSERVER_HTTP_LISTEN", "BMSERVER_STATE_DIR", "BMSERVER_LOG_LEVEL",
                            "BMSERVER_CONFIG", "XDG_RUNTIME_DIR", "STATE_DIRECTORY"})
      unsetenv(var);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write_config(const std::string& text) {
    std::string path = (dir_ / "bmserverd.toml").string();
    std::ofstream(path) << text;
    return path;
  }
  FlagValues base_flags() { return {{"state_dir", (dir_ / "state").string()}}; }

  fs::path dir_;
};

TEST_F(DaemonOptionsTest, DefaultsInSystemMode) {
  absl::StatusOr<DaemonOptions> opts = resolve_options(base_flags(), std::nullopt);
  ASSERT_TRUE(opts.ok()) << opts.status();
  EXPECT_EQ(opts->listen, "unix:/run/bmserver/bmserverd.sock");
  EXPECT_EQ(opts->http_listen, "127.0.0.1:8080");
  EXPECT_EQ(opts->log_level, "info");
  EXPECT_FALSE(opts->user_mode);
}

TEST_F(DaemonOptionsTest, UserModeFollowsXdgRuntimeDir) {
  setenv("XDG_RUNTIME_DIR", dir_.c_str(), 1);
  absl::StatusOr<DaemonOptions> opts = resolve_options(base_flags(), std::nullopt);
  ASSERT_TRUE(opts.ok()) << opts.status();
  EXPECT_TRUE(opts->user_mode);
  EXPECT_EQ(opts->listen, "unix:" + dir_.string() + "/bmserver/bmserverd.sock");
  unsetenv("XDG_RUNTIME_DIR");
}

TEST_F(DaemonOptionsTest, FlagBeatsEnvBeatsFileBeatsDefault) {
  std::string cfg =
      write_config("http_listen = \"127.0.0.1:1\"\nlog_level = \"debug\"\nlisten = \"unix:/tmp/file.sock\"\n");
  setenv("BMSERVER_HTTP_LISTEN", "127.0.0.1:2", 1);
  setenv("BMSERVER_LOG_LEVEL", "warn", 1);
  FlagValues flags = base_flags();
  flags["log_level"] = "error";
  absl::StatusOr<DaemonOptions> opts = resolve_options(flags, cfg);
  ASSERT_TRUE(opts.ok()) << opts.status();
  EXPECT_EQ(opts->log_level, "error");             // flag
  EXPECT_EQ(opts->http_listen, "127.0.0.1:2");     // env over file
  EXPECT_EQ(opts->listen, "unix:/tmp/file.sock");  // file over default
  unsetenv("BMSERVER_HTTP_LISTEN");
  unsetenv("BMSERVER_LOG_LEVEL");
}

TEST_F(DaemonOptionsTest, ConfigFromEnvironmentVariable) {
  setenv("BMSERVER_CONFIG", write_config("log_level = \"trace\"\n").c_str(), 1);
  absl::StatusOr<DaemonOptions> opts = resolve_options(base_flags(), std::nullopt);
  ASSERT_TRUE(opts.ok()) << opts.status();
  EXPECT_EQ(opts->log_level, "trace");
  unsetenv("BMSERVER_CONFIG");
}

TEST_F(DaemonOptionsTest, ConfigErrorsNameLineAndKey) {
  absl::StatusOr<std::map<std::string, std::string>> unknown =
      parse_config_file(write_config("\n# c\nlisten_addr = \"x\"\n"));
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find(":3:"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("listen_addr"), std::string::npos);

  absl::StatusOr<std::map<std::string, std::string>> wrong_type = parse_config_file(write_config("log_level = true\n"));
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_NE(wrong_type.status().message().find("log_level"), std::string::npos);

  EXPECT_FALSE(parse_config_file(write_config("just words\n")).ok());
  EXPECT_FALSE(parse_config_file((dir_ / "missing.toml").string()).ok());
}

TEST_F(DaemonOptionsTest, TcpNeedsTlsAndToken) {
  FlagValues flags = base_flags();
  flags["listen"] = "tcp:127.0.0.1:7070";
  absl::StatusOr<DaemonOptions> opts = resolve_options(flags, std::nullopt);
  ASSERT_FALSE(opts.ok());
  EXPECT_NE(opts.status().message().find("TLS"), std::string::npos);
  flags["tls_cert"] = "c.pem";
  flags["tls_key"] = "k.pem";
  flags["token_file"] = "t";
  EXPECT_TRUE(resolve_options(flags, std::nullopt).ok());
}

TEST_F(DaemonOptionsTest, RejectsBadValues) {
  FlagValues flags = base_flags();
  flags["log_level"] = "loud";
  EXPECT_FALSE(resolve_options(flags, std::nullopt).ok());
  flags = base_flags();
  flags["http_listen"] = "8080";
  EXPECT_FALSE(resolve_options(flags, std::nullopt).ok());
  flags = base_flags();
  std::ofstream((dir_ / "file").string()) << "x";
  flags["state_dir"] = (dir_ / "file" / "state").string();
  EXPECT_FALSE(resolve_options(flags, std::nullopt).ok());
  EXPECT_FALSE(fs::exists(dir_ / "file" / "state"));
}

}  // namespace
}  // namespace bm::daemon
