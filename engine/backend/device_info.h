#pragma once
// What the engine can run on: NVIDIA GPUs (through NVML and the CUDA plugin, both loaded at run time so that
// no binary needs a driver to start) and the CPU the reference backend uses.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend/gpu_topology.h"

namespace bm::engine {

struct GpuInfo {
  int32_t index = 0;
  std::string name;
  uint64_t memory_total_bytes = 0;
  uint64_t memory_free_bytes = 0;
  std::string compute_capability;
  std::string uuid;
};

struct CpuInfo {
  std::string model_name;
  int32_t logical_cores = 0;
  int32_t physical_cores = 0;
  std::vector<std::string> simd_features;
  uint64_t memory_total_bytes = 0;
  std::string gemm_path;         // the packed GEMM's instruction path (BMSERVER_CPU_GEMM or the best present)
  std::string quantized_kernel;  // the GPTQ/AWQ kernel clone this CPU runs, and the path of 4-bit layers
};

struct DeviceInfo {
  std::vector<GpuInfo> gpus;
  bool gpus_same_model = true;
  std::string gpu_status;  // a sentence when GPUs could not be used; empty when fine
  std::string driver_version;
  std::string cuda_driver_api_version;
  std::string cuda_runtime_version;
  std::string nccl_version;
  std::string cublas_version;
  std::string cuda_plugin;  // path of the loaded plugin, or why none was loaded
  // Every pair of the listed GPUs (a < b), NVLink or the PCIe path; topology_status a sentence when there are
  // none to give ("NVML not available …", one GPU, an NVML without the topology calls).
  std::vector<GpuLink> gpu_links;
  std::string topology_status;
  CpuInfo cpu;
  // The quantized weight formats the engine serves, as quant_scheme_name spells them (docs/quantization.md).
  std::vector<std::string> quantization_formats;
};

// Probes NVML, the CUDA plugin and /proc. Never fails: what it cannot find it describes in a sentence.
DeviceInfo detect_devices();

// Where the CUDA backend plugin is looked for: BMSERVER_CUDA_PLUGIN, else <exe dir>/../lib/bmserver/.
std::string cuda_plugin_path();

}  // namespace bm::engine
