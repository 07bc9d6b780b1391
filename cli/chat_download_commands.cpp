#include "cli/chat_download_commands.h"
#include "cli/command_environment.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "bmserver/v1/models.grpc.pb.h"
#include "cli/daemon_client.h"
#include "cli/exit_codes.h"
#include "cli/proto_json.h"
#include "common/size_format.h"

namespace bm::cli {
namespace {

using bmserver::v1::DownloadEvent;

std::atomic<bool> g_interrupted{false};

void on_sigint(int) {
  g_interrupted.store(true);
}

// Ctrl-C cancels the RPC (the daemon stops and keeps partial files for a resume) instead of killing the CLI.
class InterruptGuard {
 public:
  explicit InterruptGuard(grpc::ClientContext* context) : context_(context) {
    g_interrupted.store(false);
    struct sigaction action {};
    action.sa_handler = on_sigint;
    sigaction(SIGINT, &action, &previous_);
    watcher_ = std::thread([this] {
      while (!done_.load()) {
        if (g_interrupted.load()) {
          context_->TryCancel();
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }
  ~InterruptGuard() {
    done_.store(true);
    watcher_.join();
    sigaction(SIGINT, &previous_, nullptr);
  }
  bool interrupted() const { return g_interrupted.load(); }

 private:
  grpc::ClientContext* context_;
  struct sigaction previous_ {};
  std::atomic<bool> done_{false};
  std::thread watcher_;
};

std::string format_eta(double seconds) {
  if (seconds < 0) return "--:--";
  long total = static_cast<long>(seconds + 0.5);
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof(text), "%ld:%02ld:%02ld", total / 3600, total / 60 % 60, total % 60);
  } else {
    std::snprintf(text, sizeof(text), "%ld:%02ld", total / 60, total % 60);
  }
  return text;
}

std::string progress_line(const DownloadEvent& event, bool with_bar) {
  double fraction = event.bytes_total() > 0 ? static_cast<double>(event.bytes_done()) / event.bytes_total() : 0;
  std::string line = event.name() + " ";
  if (with_bar) {
    constexpr int kWidth = 24;
    int filled = static_cast<int>(fraction * kWidth);
    line += '[';
    line.append(filled, '#');
    line.append(kWidth - filled, '.');
    line += "] ";
  } else {
    line += event.phase() + " ";
  }
  char text[200];
  std::snprintf(text, sizeof(text), "%3d%% %s/%s %s/s ETA %s files %u/%u", static_cast<int>(fraction * 100),
                common::format_size(event.bytes_done()).c_str(), common::format_size(event.bytes_total()).c_str(),
                common::format_size(static_cast<uint64_t>(event.bytes_per_second())).c_str(),
                format_eta(event.eta_seconds()).c_str(), event.files_done(), event.files_total());
  line += text;
  // Bytes per file: the files in flight, largest first, at most three (a terminal line has room for no more).
  std::vector<const bmserver::v1::FileProgress*> files;
  for (const auto& file : event.files()) files.push_back(&file);
  std::sort(files.begin(), files.end(), [](auto* a, auto* b) { return a->bytes_total() > b->bytes_total(); });
  for (size_t i = 0; i < files.size() && i < 3; ++i) {
    const auto& file = *files[i];
    int percent = file.bytes_total() > 0 ? static_cast<int>(100.0 * file.bytes_done() / file.bytes_total()) : 100;
    line += " | " + file.path() + " " + std::to_string(percent) + "%";
  }
  return line;
}

// Renders the stream of one RPC; returns the exit code.
template <typename Reader>
int render(const GlobalOptions& options, Reader& reader, const InterruptGuard& guard, const std::string& address) {
  bool tty = isatty(STDOUT_FILENO) != 0;
  bool json = options.output == OutputFormat::kJson;
  auto last_plain = std::chrono::steady_clock::now() - std::chrono::hours(1);
  std::string last_phase;
  DownloadEvent event;
  while (reader->Read(&event)) {
    if (json) {
      // One event per line (JSON Lines), so a consumer can read the stream as it comes.
      std::printf("%s\n", nlohmann::json::parse(to_json(event)).dump().c_str());
      std::fflush(stdout);
      continue;
    }
    bool final_event = event.phase() == "done" || event.phase() == "up-to-date" || event.phase() == "update-available";
    if (final_event) {
      if (tty) std::printf("\r\033[K");
      std::printf("%s\n", event.message().c_str());
    } else if (event.phase() == "downloading") {
      auto now = std::chrono::steady_clock::now();
      if (tty) {
        std::printf("\r\033[K%s", progress_line(event, true).c_str());
      } else if (now - last_plain >= std::chrono::seconds(5) || last_phase != event.phase()) {
        std::printf("%s\n", progress_line(event, false).c_str());
        last_plain = now;
      }
    } else if (event.phase() != last_phase) {
      std::printf(tty ? "\r\033[K%s: %s" : "%s: %s\n", event.name().c_str(), event.phase().c_str());
    }
    last_phase = event.phase();
    std::fflush(stdout);
  }
  grpc::Status status = reader->Finish();
  if (tty && !json) std::printf("\r\033[K");
  std::fflush(stdout);
  if (guard.interrupted()) {
    std::fprintf(stderr,
                 "bmserver: interrupted; the daemon stopped the download and keeps partial files, "
                 "run the same command again to resume\n");
    return kExitInterrupted;
  }
  if (!status.ok()) {
    // The daemon answered the connect check; a transport error now means it went away mid-download.
    const std::string& text = status.error_message();
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
        (text == "Socket closed" || text.find("Connection reset") != std::string::npos ||
         text.find("failed to connect") != std::string::npos || text.find("Broken pipe") != std::string::npos)) {
      std::fprintf(stderr,
                   "bmserver: the daemon at %s went away during the download (%s); partial files are "
                   "kept, run the same command again once it is back to resume\n",
                   address.c_str(), text.c_str());
      return kExitFailed;
    }
    std::fprintf(stderr, "bmserver: %s\n", status.error_message().c_str());
    return status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? kExitUsage : kExitFailed;
  }
  return kExitOk;
}

absl::StatusOr<DaemonClient> connect_or_report(const GlobalOptions& options, int& exit_code) {
  absl::StatusOr<DaemonClient> client = DaemonClient::connect(options.daemon);
  if (!client.ok()) {
    std::fprintf(stderr, "bmserver: %s\n", std::string(client.status().message()).c_str());
    exit_code = client.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitNoDaemon;
  }
  return client;
}

void fill_store(bmserver::v1::StoreSelector* store, const std::string& hub, const std::string& local_dir) {
  store->set_hub(hub);
  if (!local_dir.empty()) {
    std::error_code ec;
    store->set_local_dir(std::filesystem::absolute(local_dir, ec).lexically_normal().string());
  }
  add_command_environment(*store);
}

bool confirm(const std::string& question) {
  std::printf("%s [y/N] ", question.c_str());
  std::fflush(stdout);
  std::string answer;
  if (!std::getline(std::cin, answer)) return false;
  return answer == "y" || answer == "Y" || answer == "yes";
}

}  // namespace

int run_download(const GlobalOptions& options, const DownloadArgs& args) {
  int exit_code = kExitOk;
  absl::StatusOr<DaemonClient> client = connect_or_report(options, exit_code);
  if (!client.ok()) return exit_code;
  bmserver::v1::DownloadRequest request;
  fill_store(request.mutable_store(), args.hub, args.local_dir);
  request.set_name(args.name);
  request.set_revision(args.revision);
  auto stub = bmserver::v1::Models::NewStub(client->channel());
  auto context = client->open_context();
  InterruptGuard guard(context.get());
  auto reader = stub->Download(context.get(), request);
  return render(options, reader, guard, client->address());
}

int run_update(const GlobalOptions& options, const UpdateArgs& args) {
  // As `chat remove`: without -y someone must confirm, and without a terminal (or with JSON output) nobody can.
  bool interactive = isatty(STDIN_FILENO) != 0 && options.output != OutputFormat::kJson;
  if (!args.yes && !interactive) {
    std::fprintf(stderr, "bmserver: not updating: %s, so nobody can confirm; pass -y\n",
                 options.output == OutputFormat::kJson ? "the output is JSON" : "stdin is not a terminal");
    return kExitUsage;
  }
  int exit_code = kExitOk;
  absl::StatusOr<DaemonClient> client = connect_or_report(options, exit_code);
  if (!client.ok()) return exit_code;
  auto stub = bmserver::v1::Models::NewStub(client->channel());
  bmserver::v1::UpdateRequest request;
  fill_store(request.mutable_store(), args.hub, args.local_dir);
  request.set_pattern(args.pattern);
  if (!args.yes) {
    // Ask first: list what would change (a dry run), then fetch on "y".
    request.set_dry_run(true);
    auto context = client->open_context();
    InterruptGuard guard(context.get());
    auto reader = stub->Update(context.get(), request);
    DownloadEvent event;
    int num_outdated = 0;
    while (reader->Read(&event)) {
      std::printf("%s\n", event.message().c_str());
      if (event.phase() == "update-available") ++num_outdated;
    }
    grpc::Status status = reader->Finish();
    if (guard.interrupted()) return kExitInterrupted;
    if (!status.ok()) {
      std::fprintf(stderr, "bmserver: %s\n", status.error_message().c_str());
      return kExitFailed;
    }
    if (num_outdated == 0) return kExitOk;
    if (!confirm("Update " + std::to_string(num_outdated) + " model(s)?")) return kExitOk;
    request.set_dry_run(false);
  }
  auto context = client->open_context();
  InterruptGuard guard(context.get());
  auto reader = stub->Update(context.get(), request);
  return render(options, reader, guard, client->address());
}

}  // namespace bm::cli
