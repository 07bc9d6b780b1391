#include "tests/unit/common/hub/fake_hub_fixture.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/hub/http_client.h"

namespace bm::common::testing {

namespace fs = std::filesystem;

namespace {
std::string source_dir() {
  const char* dir = std::getenv("BMSERVER_SOURCE_DIR");
  return dir != nullptr ? dir : ".";
}
}  // namespace

void FakeHubTest::SetUp() {
  char pattern[] = "/tmp/bm-hub-test-XXXXXX";
  work_ = mkdtemp(pattern);
  root_ = work_ + "/hub";
  std::string port_file = work_ + "/port";
  std::string script = source_dir() + "/tests/tools/fake_hub.py";
  hub_pid_ = fork();
  if (hub_pid_ == 0) {
    // The hub dies with the test even when the test crashes, so it never holds ctest's output pipe open.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execlp("python3", "python3", script.c_str(), "--port-file", port_file.c_str(), "--token", token_.c_str(),
           static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 200 && !fs::exists(port_file); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(fs::exists(port_file)) << "fake_hub.py did not start (" << script << ")";
  endpoint_ = "http://127.0.0.1:" + file_text(port_file);
}

void FakeHubTest::TearDown() {
  if (hub_pid_ > 0) {
    kill(hub_pid_, SIGTERM);
    waitpid(hub_pid_, nullptr, 0);
  }
  std::error_code ec;
  fs::remove_all(work_, ec);
}

std::string FakeHubTest::post(const std::string& path, const std::string& body) {
  HttpClient client;
  HttpRequest request;
  request.method = "POST";
  request.url = endpoint_ + path;
  request.body = body;
  request.headers = {"Content-Type: application/json"};
  absl::StatusOr<HttpResponse> response = client.perform(request);
  EXPECT_TRUE(response.ok()) << response.status();
  return response.ok() ? response->body : std::string();
}

std::string FakeHubTest::push(const std::string& repo, const std::map<std::string, std::string>& files) {
  nlohmann::json spec = nlohmann::json::object();
  for (const auto& [path, value] : files) {
    if (value.rfind("size:", 0) == 0) {
      size_t colon = value.find(':', 5);
      spec[path] = {{"size", std::stoull(value.substr(5, colon - 5))}, {"seed", std::stoi(value.substr(colon + 1))}};
    } else {
      spec[path] = value;
    }
  }
  nlohmann::json body = {{"repo", repo}, {"files", spec}};
  return nlohmann::json::parse(post("/_control/repo", body.dump()))["commit"].get<std::string>();
}

void FakeHubTest::set_faults(const std::string& json_array) {
  post("/_control/faults", json_array);
}

std::string FakeHubTest::stats_json() {
  HttpClient client;
  HttpRequest request;
  request.url = endpoint_ + "/_control/stats";
  absl::StatusOr<HttpResponse> response = client.perform(request);
  return response.ok() ? response->body : std::string("{}");
}

uint64_t FakeHubTest::bytes_served(const std::string& path) {
  nlohmann::json stats = nlohmann::json::parse(stats_json());
  return stats["bytes_served"].value(path, uint64_t{0});
}

DownloadOptions FakeHubTest::hf_options(const std::string& repo) const {
  DownloadOptions options;
  options.hub.kind = HubKind::kHuggingFace;
  options.hub.endpoint = endpoint_;
  options.hub.token = token_;
  options.hub.endpoint_variable = "HF_ENDPOINT";
  options.hub.token_variable = "HF_TOKEN";
  options.hub.other_hub_flag = "--hub ms";
  options.repo_id = repo;
  options.root = root_;
  options.retry.initial_backoff = std::chrono::milliseconds(10);
  options.retry.max_backoff = std::chrono::milliseconds(50);
  options.progress_interval = std::chrono::milliseconds(20);
  return options;
}

std::string FakeHubTest::file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string FakeHubTest::python() {
  const char* py = std::getenv("BMSERVER_PYTHON");
  if (py != nullptr && fs::exists(py)) return py;
  std::string venv = source_dir() + "/.venv/bin/python";
  return fs::exists(venv) ? venv : std::string();
}

std::string FakeHubTest::run_python(const std::string& code, const std::map<std::string, std::string>& env) {
  std::string script = work_ + "/check.py";
  std::ofstream(script) << code;
  std::string command;
  for (const auto& [name, value] : env) command += name + "='" + value + "' ";
  command += python() + " " + script + " 2>&1";
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  char buffer[4096];
  size_t got;
  while ((got = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, got);
  pclose(pipe);
  return output;
}

}  // namespace bm::common::testing
