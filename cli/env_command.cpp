#include "cli/env_command.h"

#include <cstdio>
#include <string>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "bmserver/v1/system.grpc.pb.h"
#include "cli/daemon_client.h"
#include "cli/exit_codes.h"
#include "cli/proto_json.h"
#include "cli/table.h"
#include "common/size_format.h"
#include "common/version.h"

namespace bm::cli {
namespace {

std::string or_dash(const std::string& s) {
  return s.empty() ? "-" : s;
}

void print_field(const char* name, const std::string& value) {
  std::printf("  %-22s %s\n", name, or_dash(value).c_str());
}

void render_env_table(const bmserver::v1::EnvResponse& env) {
  std::printf("BMServer\n");
  print_field("CLI version", std::string(common::version()));
  print_field("daemon version", env.daemon_version());
  print_field("state dir", env.state_dir());
  print_field("OpenAI API", "http://" + env.http_listen());

  std::printf("\nNVIDIA GPUs\n");
  if (env.gpus().empty()) {
    std::printf("  none: %s\n", or_dash(env.gpu_status()).c_str());
  } else {
    Table gpus;
    gpus.add_column("INDEX", Table::Align::kRight);
    gpus.add_column("NAME");
    gpus.add_column("MEMORY", Table::Align::kRight);
    gpus.add_column("FREE", Table::Align::kRight);
    gpus.add_column("COMPUTE CAP.");
    gpus.add_column("UUID");
    for (const auto& g : env.gpus())
      gpus.add_row({std::to_string(g.index()), g.name(), common::format_size(g.memory_total_bytes()),
                    common::format_size(g.memory_free_bytes()), g.compute_capability(), g.uuid()});
    std::printf("%s", gpus.render().c_str());
    print_field("same model", env.gpus_same_model() ? "yes" : "no (serving refuses mixed GPU models)");
    if (!env.gpu_status().empty()) print_field("note", env.gpu_status());
  }
  print_field("driver", env.driver_version());
  print_field("CUDA (driver API)", env.cuda_driver_api_version());
  print_field("CUDA runtime", env.cuda_runtime_version());
  print_field("NCCL", env.nccl_version());
  print_field("cuBLAS", env.cublas_version());
  print_field("CUDA plugin", env.cuda_plugin());

  // Tensor parallelism's all-reduces cross these links every layer (docs/tensor-parallel.md).
  std::printf("\nGPU topology\n");
  if (env.gpu_links().empty()) {
    std::printf("  none: %s\n", or_dash(env.topology_status()).c_str());
  } else {
    for (const auto& link : env.gpu_links()) {
      const std::string pair = "GPU " + std::to_string(link.a()) + " - GPU " + std::to_string(link.b());
      print_field(pair.c_str(), link.description());
    }
  }

  const auto& cpu = env.cpu();
  std::printf("\nCPU (the cpu backend)\n");
  print_field("model", cpu.model_name());
  print_field("cores",
              std::to_string(cpu.logical_cores()) + " logical, " + std::to_string(cpu.physical_cores()) + " physical");
  std::string simd;
  for (const auto& f : cpu.simd_features()) simd += (simd.empty() ? "" : " ") + f;
  print_field("SIMD", simd);
  print_field("memory", common::format_size(cpu.memory_total_bytes()));
  print_field("GEMM path", cpu.gemm_path());
  print_field("quantized kernel", cpu.quantized_kernel());
  std::string formats;
  for (const auto& f : env.quantization_formats()) formats += (formats.empty() ? "" : " ") + f;
  std::printf("\nQuantized weights (cpu backend; the CUDA plugin when it loads)\n");
  print_field("formats", formats);

  std::printf("\nModel store\n");
  print_field("Hugging Face cache", env.store_roots().hf_hub_cache());
  print_field("ModelScope cache", env.store_roots().modelscope_cache());
  print_field("default hub", env.store_roots().default_hub());
}

}  // namespace

int run_env(const GlobalOptions& options) {
  absl::StatusOr<DaemonClient> client = DaemonClient::connect(options.daemon);
  if (!client.ok()) {
    std::fprintf(stderr, "bmserver: %s\n", std::string(client.status().message()).c_str());
    return client.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitNoDaemon;
  }
  auto stub = bmserver::v1::System::NewStub(client->channel());
  bmserver::v1::EnvResponse env;
  grpc::Status status = stub->Env(client->context().get(), bmserver::v1::EnvRequest(), &env);
  if (!status.ok()) return report_rpc_error(status, client->address());
  if (options.output == OutputFormat::kJson) {
    nlohmann::json out = nlohmann::json::parse(to_json(env));
    out["cli_version"] = std::string(common::version());
    // The fields the original's `env` printed (its Environment model), under its names, so scripts that read them
    // keep working. It had no CPU fallback: no GPU is "" and 0. There is no Python stack here: null.
    out["nvidia_device_name"] = env.gpus().empty() ? "" : env.gpus(0).name();
    out["nvidia_device_count"] = env.gpus_size();
    out["nvidia_driver_version"] = env.driver_version();
    out["bmserver_version"] = env.daemon_version();
    for (const char* absent : {"torch_version", "transformers_version", "vllm_version"}) out[absent] = nullptr;
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    render_env_table(env);
  }
  return kExitOk;
}

int run_version(const GlobalOptions& options) {
  std::string daemon_line;
  absl::StatusOr<DaemonClient> client = DaemonClient::connect(options.daemon);
  if (client.ok()) {
    auto stub = bmserver::v1::System::NewStub(client->channel());
    bmserver::v1::VersionResponse version;
    grpc::Status status = stub->Version(client->context(std::chrono::seconds(10)).get(), {}, &version);
    daemon_line = status.ok() ? version.version() : "unknown (" + status.error_message() + ")";
  } else {
    daemon_line = "not reachable (" + std::string(client.status().message()) + ")";
  }
  if (options.output == OutputFormat::kJson) {
    nlohmann::json out = {{"cli_version", std::string(common::version())}, {"daemon_version", daemon_line}};
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("bmserver %s\nbmserverd %s\n", std::string(common::version()).c_str(), daemon_line.c_str());
  }
  return kExitOk;
}

}  // namespace bm::cli
