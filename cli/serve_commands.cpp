#include "cli/serve_commands.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include <grpcpp/grpcpp.h>

#include "bmserver/v1/serving.grpc.pb.h"
#include "cli/command_environment.h"
#include "cli/daemon_client.h"
#include "cli/exit_codes.h"
#include "cli/proto_json.h"
#include "cli/table.h"
#include "common/size_format.h"

namespace bm::cli {
namespace {

std::string format_uptime(int64_t seconds) {
  if (seconds < 60) return std::to_string(seconds) + "s";
  if (seconds < 3600) return std::to_string(seconds / 60) + "m" + std::to_string(seconds % 60) + "s";
  if (seconds < 86400) return std::to_string(seconds / 3600) + "h" + std::to_string(seconds % 3600 / 60) + "m";
  return std::to_string(seconds / 86400) + "d" + std::to_string(seconds % 86400 / 3600) + "h";
}

std::string gpu_list(const bmserver::v1::ServedModel& m) {
  // CPU ranks (tensor parallelism on the CPU backend): how many.
  if (m.gpus().empty()) return m.ranks_size() > 1 ? "cpu x" + std::to_string(m.ranks_size()) : "-";
  std::string out;
  for (int g : m.gpus()) {
    if (!out.empty()) out += ',';
    out += std::to_string(g);
  }
  return out;
}

void print_ready(const bmserver::v1::ServedModel& m) {
  std::printf("Serving %s (%s) on %s, backend %s%s\n", m.name().c_str(), m.repo_id().c_str(), m.http_url().c_str(),
              m.backend().c_str(), m.gpus().empty() ? "" : (std::string(" GPUs ") += gpu_list(m)).c_str());
  std::printf("  weights %s%s, KV cache %s = %lld tokens, max model len %d, max concurrent sequences %d\n",
              common::format_size(m.weight_bytes()).c_str(),
              m.quantization().empty() ? "" : (" (" + m.quantization() + ")").c_str(),
              common::format_size(m.kv_cache_bytes()).c_str(), static_cast<long long>(m.kv_capacity_tokens()),
              m.max_model_len(), m.max_num_seqs());
  std::printf(
      "  try: curl %s/v1/chat/completions -H 'Content-Type: application/json' -d '{\"model\": \"%s\", "
      "\"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'\n",
      m.http_url().c_str(), m.name().c_str());
}

absl::StatusOr<DaemonClient> connect_or_report(const GlobalOptions& options, int& exit_code) {
  absl::StatusOr<DaemonClient> client = DaemonClient::connect(options.daemon);
  if (!client.ok()) {
    std::fprintf(stderr, "bmserver: %s\n", std::string(client.status().message()).c_str());
    exit_code = client.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitNoDaemon;
  }
  return client;
}

}  // namespace

int run_serve(const GlobalOptions& options, const ServeArgs& args) {
  bmserver::v1::ServeRequest request;
  if (absl::Status s = fill_serve_options(args.serve, *request.mutable_options()); !s.ok()) {
    std::fprintf(stderr, "bmserver: %s\n", std::string(s.message()).c_str());
    return kExitUsage;
  }
  int exit_code = kExitOk;
  absl::StatusOr<DaemonClient> client = connect_or_report(options, exit_code);
  if (!client.ok()) return exit_code;
  request.mutable_store()->set_hub(args.serve.hub);
  std::string local_dir = args.serve.local_dir;
  if (!local_dir.empty()) {
    std::error_code ec;
    local_dir = std::filesystem::absolute(local_dir, ec).string();  // the daemon resolves paths on its own
  }
  request.mutable_store()->set_local_dir(local_dir);
  add_command_environment(*request.mutable_store());
  // --host alone meant the original's default port 8080 (which the daemon's own listener usually holds: the
  // daemon then says so).
  request.set_check(args.check);
  if (args.port > 0 || !args.host.empty()) {
    request.mutable_options()->set_listen_host(args.host.empty() ? "127.0.0.1" : args.host);
    request.mutable_options()->set_listen_port(args.port > 0 ? args.port : 8080);
  }
  // A model folder given relative to the caller's directory means nothing to the daemon: send it absolute.
  std::string name = args.name;
  std::error_code name_ec;
  if (name.find('/') != std::string::npos && std::filesystem::is_directory(name, name_ec))
    name = std::filesystem::absolute(name, name_ec).lexically_normal().string();
  request.set_name(name);

  auto stub = bmserver::v1::Serving::NewStub(client->channel());
  auto context = client->open_context();
  auto reader = stub->Serve(context.get(), request);
  bmserver::v1::ServeEvent event;
  bool tty = isatty(STDOUT_FILENO);
  while (reader->Read(&event)) {
    if (options.output == OutputFormat::kJson) {
      std::printf("%s\n", to_json(event).c_str());
      std::fflush(stdout);
      continue;
    }
    if (event.phase() == "plan") {
      std::printf("%s", event.message().c_str());
    } else if (event.phase() == "ready") {
      if (tty) std::printf("\r\033[K");
      print_ready(event.model());
    } else {
      std::printf(tty ? "\r\033[K%s: %s" : "%s: %s\n", event.phase().c_str(), event.message().c_str());
      std::fflush(stdout);
    }
  }
  grpc::Status status = reader->Finish();
  if (tty && options.output != OutputFormat::kJson) std::printf("\r\033[K");
  if (!status.ok()) return report_rpc_error(status, client->address());
  return kExitOk;
}

int run_ps(const GlobalOptions& options) {
  int exit_code = kExitOk;
  absl::StatusOr<DaemonClient> client = connect_or_report(options, exit_code);
  if (!client.ok()) return exit_code;
  auto stub = bmserver::v1::Serving::NewStub(client->channel());
  bmserver::v1::ListServedResponse response;
  grpc::Status status = stub->List(client->context().get(), {}, &response);
  if (!status.ok()) return report_rpc_error(status, client->address());
  if (options.output == OutputFormat::kJson) {
    std::printf("%s\n", to_json(response).c_str());
    return kExitOk;
  }
  Table table;
  for (const char* h :
       {"NAME", "STATE", "BACKEND", "QUANT", "GPUS", "MEMORY", "KV CAPACITY", "RUNNING", "WAITING", "UPTIME", "URL"})
    table.add_column(h, std::string(h) == "MEMORY" || std::string(h) == "KV CAPACITY" || std::string(h) == "RUNNING" ||
                                std::string(h) == "WAITING" || std::string(h) == "UPTIME"
                            ? Table::Align::kRight
                            : Table::Align::kLeft);
  for (const auto& m : response.models()) {
    std::string state = m.state() == "failed" ? "failed: " + m.error() : m.state();
    table.add_row({m.name(), state, m.backend(), m.quantization().empty() ? "-" : m.quantization(), gpu_list(m),
                   common::format_size(m.weight_bytes() + m.kv_cache_bytes()),
                   std::to_string(m.kv_capacity_tokens()) + " tok", std::to_string(m.num_running()),
                   std::to_string(m.num_waiting()), format_uptime(m.uptime_seconds()), m.http_url()});
  }
  std::printf("%s", table.render().c_str());
  // A model split over ranks: what each rank's device holds (the row above gives the sums).
  for (const auto& m : response.models()) {
    if (m.ranks_size() <= 1) continue;
    std::printf("\n%s: %d tensor-parallel ranks\n", m.name().c_str(), m.ranks_size());
    Table ranks;
    ranks.add_column("RANK", Table::Align::kRight);
    ranks.add_column("DEVICE");
    ranks.add_column("WEIGHTS", Table::Align::kRight);
    ranks.add_column("KV CACHE", Table::Align::kRight);
    ranks.add_column("MEMORY", Table::Align::kRight);
    for (const auto& r : m.ranks())
      ranks.add_row({std::to_string(r.rank()), r.gpu() >= 0 ? "GPU " + std::to_string(r.gpu()) : "cpu",
                     common::format_size(r.weight_bytes()), common::format_size(r.kv_cache_bytes()),
                     common::format_size(r.weight_bytes() + r.kv_cache_bytes())});
    std::printf("%s", ranks.render().c_str());
  }
  return kExitOk;
}

int run_stop(const GlobalOptions& options, const std::string& name) {
  int exit_code = kExitOk;
  absl::StatusOr<DaemonClient> client = connect_or_report(options, exit_code);
  if (!client.ok()) return exit_code;
  auto stub = bmserver::v1::Serving::NewStub(client->channel());
  bmserver::v1::StopRequest request;
  request.set_name(name);
  bmserver::v1::StopResponse response;
  grpc::Status status = stub->Stop(client->context().get(), request, &response);
  if (!status.ok()) return report_rpc_error(status, client->address());
  if (options.output == OutputFormat::kJson) {
    std::printf("%s\n", to_json(response).c_str());
  } else {
    std::printf("Stopped %s\n", response.model().name().c_str());
  }
  return kExitOk;
}

}  // namespace bm::cli
