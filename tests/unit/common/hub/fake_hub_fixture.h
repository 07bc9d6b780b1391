#pragma once
#include <sys/types.h>

#include <map>
#include <string>

#include <gtest/gtest.h>

#include "absl/status/statusor.h"
#include "common/hub/downloader.h"

namespace bm::common::testing {

// Starts tests/tools/fake_hub.py on a free loopback port for each test and gives a temp store.
class FakeHubTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Creates a new commit of `repo` on main; values are text, or "size:N:seed" for generated binary content.
  std::string push(const std::string& repo, const std::map<std::string, std::string>& files);
  void set_faults(const std::string& json_array);
  std::string stats_json();
  uint64_t bytes_served(const std::string& path);
  // Options for the HF cache at `root_` with quick retries.
  DownloadOptions hf_options(const std::string& repo) const;
  static std::string file_text(const std::string& path);
  std::string run_python(const std::string& code, const std::map<std::string, std::string>& env);
  static std::string python();

  std::string endpoint_;
  std::string work_;
  std::string root_;
  std::string token_ = "hf_test_token";

 private:
  std::string post(const std::string& path, const std::string& body);
  pid_t hub_pid_ = -1;
};

}  // namespace bm::common::testing
