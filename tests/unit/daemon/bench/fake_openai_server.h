#pragma once
// Starts tests/tools/fake_openai_server.py (Python standard library) for a test and stops it after.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace bm::daemon::bench::testing {

class FakeOpenAiServer {
 public:
  explicit FakeOpenAiServer(std::vector<std::string> args = {}) {
    const char* source = std::getenv("BMSERVER_SOURCE_DIR");
    const char* python = std::getenv("BMSERVER_PYTHON");
    std::string script = std::string(source ? source : ".") + "/tests/tools/fake_openai_server.py";
    std::string py = python && *python && access(python, X_OK) == 0 ? python : "python3";
    int fds[2];
    if (pipe(fds) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      std::vector<std::string> all = {py, script};
      all.insert(all.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    FILE* out = fdopen(fds[0], "r");
    char line[128] = {};
    if (out && std::fgets(line, sizeof(line), out)) std::sscanf(line, "PORT %d", &port_);
    if (out) std::fclose(out);
  }
  ~FakeOpenAiServer() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool ok() const { return port_ > 0; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace bm::daemon::bench::testing
