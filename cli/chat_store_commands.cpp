#include "cli/chat_store_commands.h"

#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <grpcpp/grpcpp.h>

#include "bmserver/v1/models.grpc.pb.h"
#include "cli/command_environment.h"
#include "cli/daemon_client.h"
#include "cli/exit_codes.h"
#include "cli/proto_json.h"
#include "cli/table.h"
#include "common/catalog/catalog.h"
#include "common/size_format.h"

namespace bm::cli {
namespace {

namespace v1 = bmserver::v1;

v1::StoreSelector selector(const StoreArgs& args) {
  v1::StoreSelector out;
  out.set_hub(args.hub);
  if (!args.local_dir.empty()) {
    std::error_code ec;
    // The daemon has its own working directory: send the path absolute.
    out.set_local_dir(std::filesystem::absolute(args.local_dir, ec).lexically_normal().string());
  }
  add_command_environment(out);
  return out;
}

std::string size_on_disk_cell(const v1::ModelRow& row) {
  if (!row.has_stored()) return "";
  std::string size = common::format_size(row.stored().size_on_disk());
  return row.downloaded() ? size : size + " (" + row.stored().state() + ")";
}

std::string path_cell(const v1::ModelRow& row) {
  if (!row.has_stored()) return "";
  return row.stored().snapshot_path().empty() ? row.stored().repo_path() : row.stored().snapshot_path();
}

void print_rows(const v1::SearchResponse& response) {
  Table table;
  for (const char* header : {"NAME", "MODAL", "SERIES"}) table.add_column(header);
  table.add_column("SIZE", Table::Align::kRight);
  for (const char* header : {"QUANT", "TOOL CALL", "REASONING", "MODEL ID"}) table.add_column(header);
  table.add_column("SIZE ON DISK", Table::Align::kRight);
  table.add_column("PATH");
  for (const v1::ModelRow& row : response.rows()) {
    const v1::CatalogEntry& e = row.entry();
    table.add_row({e.name(), e.modality(), e.series(), common::format_model_size(e.size_b()), e.quant(), e.tool_call(),
                   e.reasoning(), row.repo_id(), size_on_disk_cell(row), path_cell(row)});
  }
  std::printf("%s", table.render().c_str());
  for (const v1::ModelRow& row : response.rows())
    if (row.has_stored() && !row.downloaded())
      std::printf("%s is %s: %s\n", row.entry().name().c_str(), row.stored().state().c_str(),
                  row.stored().reason().c_str());
  std::printf("Store: %s at %s%s\n", response.store_kind().c_str(), response.store_root().c_str(),
              response.store_root_exists() ? "" : " (does not exist; treated as empty)");
}

int search_or_list(const GlobalOptions& options, const StoreArgs& args, bool list) {
  absl::StatusOr<DaemonClient> client = DaemonClient::connect(options.daemon);
  if (!client.ok()) {
    std::fprintf(stderr, "bmserver: %s\n", std::string(client.status().message()).c_str());
    return client.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitNoDaemon;
  }
  v1::SearchRequest request;
  *request.mutable_store() = selector(args);
  request.set_pattern(args.pattern);
  request.set_series(args.series);
  request.set_size(args.size);
  request.set_quant(args.quant);
  v1::SearchResponse response;
  auto stub = v1::Models::NewStub(client->channel());
  grpc::Status status = list ? stub->List(client->context().get(), request, &response)
                             : stub->Search(client->context().get(), request, &response);
  if (!status.ok()) return report_rpc_error(status, client->address());
  if (options.output == OutputFormat::kJson)
    std::printf("%s\n", to_json(response).c_str());
  else
    print_rows(response);
  return kExitOk;
}

void print_removal(const v1::RemoveResponse& response) {
  Table table;
  table.add_column("NAME");
  table.add_column("MODEL ID");
  table.add_column("SIZE ON DISK", Table::Align::kRight);
  table.add_column("PATH");
  for (const v1::RemovedModel& m : response.models())
    table.add_row({m.name(), m.repo_id(), common::format_size(m.bytes_freed()), m.path()});
  std::printf("%s", table.render().c_str());
}

// "y" or "yes" (any case) confirms; anything else, or end of input, declines.
bool confirm(const std::string& question) {
  std::fprintf(stderr, "%s [y/N] ", question.c_str());
  std::fflush(stderr);
  std::string answer;
  if (!std::getline(std::cin, answer)) return false;
  for (char& c : answer) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return answer == "y" || answer == "yes";
}

}  // namespace

int run_search(const GlobalOptions& options, const StoreArgs& args) {
  return search_or_list(options, args, false);
}

int run_list(const GlobalOptions& options, const StoreArgs& args) {
  return search_or_list(options, args, true);
}

int run_remove(const GlobalOptions& options, const StoreArgs& args) {
  absl::StatusOr<DaemonClient> client = DaemonClient::connect(options.daemon);
  if (!client.ok()) {
    std::fprintf(stderr, "bmserver: %s\n", std::string(client.status().message()).c_str());
    return client.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitNoDaemon;
  }
  auto stub = v1::Models::NewStub(client->channel());
  v1::RemoveRequest request;
  *request.mutable_store() = selector(args);
  request.set_pattern(args.pattern);
  request.set_dry_run(true);
  v1::RemoveResponse plan;
  grpc::Status status = stub->Remove(client->context().get(), request, &plan);
  if (!status.ok()) return report_rpc_error(status, client->address());
  size_t num_models = static_cast<size_t>(plan.models_size());
  bool json = options.output == OutputFormat::kJson;
  if (!json) {
    std::printf("The following %zu chat model%s will be removed (%s freed):\n", num_models, num_models == 1 ? "" : "s",
                common::format_size(plan.total_bytes_freed()).c_str());
    print_removal(plan);
    std::fflush(stdout);
  }
  if (!args.yes) {
    if (::isatty(STDIN_FILENO) == 0) {
      std::fprintf(stderr, "bmserver: not removing: stdin is not a terminal, so nobody can confirm; pass -y\n");
      return kExitUsage;
    }
    if (!confirm("Do you want to remove the " + std::to_string(num_models) + " chat model" +
                 (num_models == 1 ? "" : "s") + "?")) {
      std::fprintf(stderr, "Aborted; nothing removed.\n");
      return kExitFailed;
    }
  }
  request.set_dry_run(false);
  v1::RemoveResponse done;
  status = stub->Remove(client->context(std::chrono::seconds(600)).get(), request, &done);
  if (!status.ok()) return report_rpc_error(status, client->address());
  if (json) {
    std::printf("%s\n", to_json(done).c_str());
    return kExitOk;
  }
  int i = 0;
  for (const v1::RemovedModel& m : done.models())
    std::printf("[%d/%d] Removed %s (%s) from %s\n", ++i, done.models_size(), m.name().c_str(), m.repo_id().c_str(),
                m.path().c_str());
  std::printf("Freed %s.\n", common::format_size(done.total_bytes_freed()).c_str());
  return kExitOk;
}

}  // namespace bm::cli
