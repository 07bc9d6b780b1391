#include "daemon/control/system_service.h"

#include "common/store/store_roots.h"
#include "common/version.h"
#include "daemon/control/rpc_status.h"
#include "engine/backend/device_info.h"

namespace bm::daemon::control {
namespace {

void fill_cpu(const engine::CpuInfo& cpu, bmserver::v1::CpuInfo* out) {
  out->set_model_name(cpu.model_name);
  out->set_logical_cores(cpu.logical_cores);
  out->set_physical_cores(cpu.physical_cores);
  for (const std::string& f : cpu.simd_features) out->add_simd_features(f);
  out->set_memory_total_bytes(cpu.memory_total_bytes);
  out->set_gemm_path(cpu.gemm_path);
  out->set_quantized_kernel(cpu.quantized_kernel);
}

}  // namespace

grpc::Status SystemService::Env(grpc::ServerContext*, const bmserver::v1::EnvRequest*,
                                bmserver::v1::EnvResponse* response) {
  return guarded("System.Env", [&] { return env(response); });
}

grpc::Status SystemService::env(bmserver::v1::EnvResponse* response) {
  engine::DeviceInfo info = engine::detect_devices();
  for (const engine::GpuInfo& gpu : info.gpus) {
    bmserver::v1::Gpu* out = response->add_gpus();
    out->set_index(gpu.index);
    out->set_name(gpu.name);
    out->set_memory_total_bytes(gpu.memory_total_bytes);
    out->set_memory_free_bytes(gpu.memory_free_bytes);
    out->set_compute_capability(gpu.compute_capability);
    out->set_uuid(gpu.uuid);
  }
  response->set_gpus_same_model(info.gpus_same_model);
  response->set_gpu_status(info.gpu_status);
  response->set_driver_version(info.driver_version);
  response->set_cuda_driver_api_version(info.cuda_driver_api_version);
  response->set_cuda_runtime_version(info.cuda_runtime_version);
  response->set_nccl_version(info.nccl_version);
  response->set_cublas_version(info.cublas_version);
  response->set_cuda_plugin(info.cuda_plugin);
  for (const engine::GpuLink& link : info.gpu_links) {
    bmserver::v1::GpuLink* out = response->add_gpu_links();
    out->set_a(link.a);
    out->set_b(link.b);
    out->set_nvlink(link.nvlink);
    out->set_nvlinks_active(link.nvlinks_active);
    out->set_pcie_path(engine::pcie_ancestor_abbreviation(link.pcie));
    out->set_description(engine::describe_gpu_link(link));
  }
  response->set_topology_status(info.topology_status);
  fill_cpu(info.cpu, response->mutable_cpu());
  for (const std::string& f : info.quantization_formats) response->add_quantization_formats(f);
  response->set_daemon_version(std::string(common::version()));
  common::StoreRoots roots = common::resolve_store_roots();
  response->mutable_store_roots()->set_hf_hub_cache(roots.hf_hub_cache);
  response->mutable_store_roots()->set_modelscope_cache(roots.modelscope_cache);
  response->mutable_store_roots()->set_default_hub(roots.default_hub);
  response->set_state_dir(context_.options.state_dir);
  response->set_http_listen(context_.options.http_listen);
  return grpc::Status::OK;
}

grpc::Status SystemService::Version(grpc::ServerContext*, const bmserver::v1::VersionRequest*,
                                    bmserver::v1::VersionResponse* response) {
  response->set_version(std::string(common::version()));
#ifdef NDEBUG
  response->set_build_type("release");
#else
  response->set_build_type("debug");
#endif
  response->set_cuda_plugin_built(!engine::cuda_plugin_path().empty() &&
                                  engine::detect_devices().cuda_plugin == engine::cuda_plugin_path());
  return grpc::Status::OK;
}

}  // namespace bm::daemon::control
