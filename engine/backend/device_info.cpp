#include "engine/backend/device_info.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/status/statusor.h"
#include "engine/backend/cpu/gemm_path.h"
#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cuda/plugin_abi.h"

namespace bm::engine {
namespace {

// NVML is a stable C ABI; declaring the handful of entry points we use avoids a build dependency on the
// driver's headers and lets every binary start on a machine without a driver.
using NvmlReturn = int;
using NvmlDevice = void*;
struct NvmlMemory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};

struct Nvml {
  void* handle = nullptr;
  NvmlReturn (*init)() = nullptr;
  NvmlReturn (*shutdown)() = nullptr;
  NvmlReturn (*driver_version)(char*, unsigned) = nullptr;
  NvmlReturn (*cuda_driver_version)(int*) = nullptr;
  NvmlReturn (*device_count)(unsigned*) = nullptr;
  NvmlReturn (*device_by_index)(unsigned, NvmlDevice*) = nullptr;
  NvmlReturn (*device_name)(NvmlDevice, char*, unsigned) = nullptr;
  NvmlReturn (*device_memory)(NvmlDevice, NvmlMemory*) = nullptr;
  NvmlReturn (*device_cc)(NvmlDevice, int*, int*) = nullptr;
  NvmlReturn (*device_uuid)(NvmlDevice, char*, unsigned) = nullptr;
  const char* (*error_string)(NvmlReturn) = nullptr;
  // Topology (optional: an NVML without them still lists the GPUs).
  NvmlReturn (*common_ancestor)(NvmlDevice, NvmlDevice, int*) = nullptr;  // nvmlGpuTopologyLevel_t
  NvmlReturn (*p2p_status)(NvmlDevice, NvmlDevice, int, int*) = nullptr;  // caps index, nvmlGpuP2PStatus_t
  NvmlReturn (*nvlink_state)(NvmlDevice, unsigned, unsigned*) = nullptr;  // link, nvmlEnableState_t

  template <typename F>
  bool bind(F& fn, const char* name) {
    fn = reinterpret_cast<F>(dlsym(handle, name));
    return fn != nullptr;
  }
};

std::string version_string(int v) {
  // CUDA encodes major*1000 + minor*10.
  if (v <= 0) return {};
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

// CUDA_VISIBLE_DEVICES narrows what the daemon sees, as it does for the CUDA runtime. Only plain indices are
// applied to NVML's list; UUID forms are passed through (NVML lists every GPU, the runtime sees the subset).
std::vector<GpuInfo> apply_visible_devices(std::vector<GpuInfo> all) {
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  if (visible == nullptr) return all;
  std::vector<GpuInfo> picked;
  std::stringstream ss(visible);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    if (item.rfind("GPU-", 0) == 0) {
      for (const GpuInfo& g : all)
        if (g.uuid == item) picked.push_back(g);
      continue;
    }
    char* end = nullptr;
    long idx = std::strtol(item.c_str(), &end, 10);
    if (*end != '\0' || idx < 0 || idx >= static_cast<long>(all.size())) break;  // the runtime stops here too
    picked.push_back(all[static_cast<size_t>(idx)]);
  }
  for (size_t i = 0; i < picked.size(); ++i) picked[i].index = static_cast<int32_t>(i);
  return picked;
}

// nvml.h's values for the topology questions.
constexpr int kNvmlP2pCapsIndexNvlink = 2;    // NVML_P2P_CAPS_INDEX_NVLINK
constexpr int kNvmlP2pStatusOk = 0;           // NVML_P2P_STATUS_OK
constexpr unsigned kNvmlNvlinkMaxLinks = 18;  // NVML_NVLINK_MAX_LINKS (NVML 12); a link past a GPU's last says so
constexpr unsigned kNvmlFeatureEnabled = 1;   // NVML_FEATURE_ENABLED

// Every pair of the visible GPUs: NVLink peer access, else the PCIe common ancestor. `handles[i]` is NVML's
// device i, `all` NVML's list, `visible` what the daemon sees (indices renumbered by CUDA_VISIBLE_DEVICES).
void probe_topology(const Nvml& nvml, const std::vector<NvmlDevice>& handles, const std::vector<GpuInfo>& all,
                    DeviceInfo& info) {
  if (nvml.common_ancestor == nullptr || nvml.p2p_status == nullptr) {
    info.topology_status = "this NVML lacks nvmlDeviceGetTopologyCommonAncestor or nvmlDeviceGetP2PStatus";
    return;
  }
  if (info.gpus.size() < 2) {
    info.topology_status = info.gpus.empty() ? "no GPU" : "one GPU: nothing to connect";
    return;
  }
  const auto handle_of = [&](const GpuInfo& g) -> NvmlDevice {
    for (size_t i = 0; i < all.size(); ++i)
      if (all[i].uuid == g.uuid) return handles[i];
    return nullptr;
  };
  for (size_t a = 0; a < info.gpus.size(); ++a) {
    NvmlDevice da = handle_of(info.gpus[a]);
    int32_t active = 0;
    if (nvml.nvlink_state != nullptr && da != nullptr) {
      for (unsigned l = 0; l < kNvmlNvlinkMaxLinks; ++l) {
        unsigned state = 0;
        if (nvml.nvlink_state(da, l, &state) == 0 && state == kNvmlFeatureEnabled) ++active;
      }
    }
    for (size_t b = a + 1; b < info.gpus.size(); ++b) {
      NvmlDevice db = handle_of(info.gpus[b]);
      GpuLink link;
      link.a = info.gpus[a].index;
      link.b = info.gpus[b].index;
      link.nvlinks_active = active;
      if (da != nullptr && db != nullptr) {
        int status = -1, level = -1;
        link.nvlink = nvml.p2p_status(da, db, kNvmlP2pCapsIndexNvlink, &status) == 0 && status == kNvmlP2pStatusOk;
        if (nvml.common_ancestor(da, db, &level) == 0) link.pcie = pcie_ancestor_from_nvml(level);
      }
      info.gpu_links.push_back(link);
    }
  }
}

void probe_nvml(DeviceInfo& info) {
  Nvml nvml;
  nvml.handle = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (nvml.handle == nullptr) {
    info.gpu_status = "no NVIDIA driver found (libnvidia-ml.so.1 could not be loaded); the CPU backend will be used";
    info.topology_status = "NVML not available (libnvidia-ml.so.1 could not be loaded)";
    return;
  }
  bool ok = nvml.bind(nvml.init, "nvmlInit_v2") && nvml.bind(nvml.shutdown, "nvmlShutdown") &&
            nvml.bind(nvml.driver_version, "nvmlSystemGetDriverVersion") &&
            nvml.bind(nvml.device_count, "nvmlDeviceGetCount_v2") &&
            nvml.bind(nvml.device_by_index, "nvmlDeviceGetHandleByIndex_v2") &&
            nvml.bind(nvml.device_name, "nvmlDeviceGetName") &&
            nvml.bind(nvml.device_memory, "nvmlDeviceGetMemoryInfo") &&
            nvml.bind(nvml.device_cc, "nvmlDeviceGetCudaComputeCapability") &&
            nvml.bind(nvml.device_uuid, "nvmlDeviceGetUUID") && nvml.bind(nvml.error_string, "nvmlErrorString");
  nvml.bind(nvml.cuda_driver_version, "nvmlSystemGetCudaDriverVersion_v2");
  nvml.bind(nvml.common_ancestor, "nvmlDeviceGetTopologyCommonAncestor");
  nvml.bind(nvml.p2p_status, "nvmlDeviceGetP2PStatus");
  nvml.bind(nvml.nvlink_state, "nvmlDeviceGetNvLinkState");
  if (!ok) {
    info.gpu_status = "the NVIDIA driver's NVML library lacks expected functions; GPUs are not used";
    info.topology_status = "NVML not available (it lacks expected functions)";
    dlclose(nvml.handle);
    return;
  }
  if (NvmlReturn rc = nvml.init(); rc != 0) {
    info.gpu_status = std::string("NVML could not start: ") + nvml.error_string(rc);
    info.topology_status = "NVML not available (it could not start)";
    dlclose(nvml.handle);
    return;
  }
  char buf[96] = {};
  if (nvml.driver_version(buf, sizeof buf) == 0) info.driver_version = buf;
  int cuda_version = 0;
  if (nvml.cuda_driver_version && nvml.cuda_driver_version(&cuda_version) == 0)
    info.cuda_driver_api_version = version_string(cuda_version);
  unsigned count = 0;
  nvml.device_count(&count);
  std::vector<GpuInfo> all;
  std::vector<NvmlDevice> handles;
  for (unsigned i = 0; i < count; ++i) {
    NvmlDevice dev = nullptr;
    if (nvml.device_by_index(i, &dev) != 0) continue;
    handles.push_back(dev);
    GpuInfo gpu;
    gpu.index = static_cast<int32_t>(i);
    if (nvml.device_name(dev, buf, sizeof buf) == 0) gpu.name = buf;
    NvmlMemory mem{};
    if (nvml.device_memory(dev, &mem) == 0) {
      gpu.memory_total_bytes = mem.total;
      gpu.memory_free_bytes = mem.free;
    }
    int major = 0, minor = 0;
    if (nvml.device_cc(dev, &major, &minor) == 0)
      gpu.compute_capability = std::to_string(major) + "." + std::to_string(minor);
    if (nvml.device_uuid(dev, buf, sizeof buf) == 0) gpu.uuid = buf;
    all.push_back(gpu);
  }
  info.gpus = apply_visible_devices(all);
  probe_topology(nvml, handles, all, info);
  nvml.shutdown();
  dlclose(nvml.handle);
  if (info.gpus.empty()) info.gpu_status = "the NVIDIA driver is present but no GPU is visible to the daemon";
  std::set<std::string> names;
  for (const GpuInfo& g : info.gpus) names.insert(g.name);
  info.gpus_same_model = names.size() <= 1;
}

void probe_cuda_plugin(DeviceInfo& info) {
  std::string path = cuda_plugin_path();
  if (!std::filesystem::exists(path)) {
    info.cuda_plugin = "not installed (looked for " + path + ")";
    return;
  }
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    info.cuda_plugin = std::string("not loaded: ") + dlerror();
    return;
  }
  auto probe = reinterpret_cast<BmCudaProbeFn>(dlsym(handle, "bm_cuda_plugin_probe"));
  if (probe == nullptr) {
    info.cuda_plugin = "not usable: " + path + " has no bm_cuda_plugin_probe";
    return;
  }
  BmCudaProbe result{};
  probe(&result);
  if (result.abi_version != BM_CUDA_PLUGIN_ABI_VERSION) {
    info.cuda_plugin = "not usable: " + path + " speaks plugin ABI " + std::to_string(result.abi_version) +
                       ", this build expects " + std::to_string(BM_CUDA_PLUGIN_ABI_VERSION);
    return;
  }
  info.cuda_plugin = path;
  info.cuda_runtime_version = version_string(result.runtime_version);
  if (info.cuda_driver_api_version.empty()) info.cuda_driver_api_version = version_string(result.driver_version);
  if (result.nccl_version > 0) {
    int v = result.nccl_version;  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch
    info.nccl_version =
        std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." + std::to_string(v % 100);
  } else {
    // The plugin opens NCCL at run time (it does not link it), so its absence is reported, not fatal.
    info.nccl_version = "not available (libnccl.so.2 could not be loaded; only tensor parallelism would need it)";
  }
  if (result.cublaslt_version > 0) {
    size_t v = result.cublaslt_version;  // major*10000 + minor*100 + patch
    info.cublas_version =
        std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." + std::to_string(v % 100);
  }
  if (result.error[0] != '\0' && info.gpu_status.empty()) info.gpu_status = result.error;
  // The plugin stays loaded: unloading CUDA runtimes at exit is a known source of crashes.
}

std::string read_first_value(const std::string& file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      return value;
    }
  }
  return {};
}

CpuInfo probe_cpu() {
  CpuInfo cpu;
  cpu.model_name = read_first_value("/proc/cpuinfo", "model name");
  cpu.logical_cores = static_cast<int32_t>(sysconf(_SC_NPROCESSORS_ONLN));
  std::set<std::pair<std::string, std::string>> cores;  // (physical id, core id)
  std::ifstream in("/proc/cpuinfo");
  std::string line, physical;
  while (std::getline(in, line)) {
    if (line.rfind("physical id", 0) == 0) physical = line.substr(line.find(':') + 1);
    if (line.rfind("core id", 0) == 0) cores.insert({physical, line.substr(line.find(':') + 1)});
  }
  cpu.physical_cores = cores.empty() ? cpu.logical_cores : static_cast<int32_t>(cores.size());
  // Built by appending: `" " + std::string&&` trips GCC 12's -Wrestrict false positive (PR 105329).
  std::string flags = " ";
  flags += read_first_value("/proc/cpuinfo", "flags");
  flags += " ";
  for (const char* f : {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
                        "avx512_vnni", "amx_bf16", "amx_tile", "asimd", "sve"}) {
    if (flags.find(std::string(" ") + f + " ") != std::string::npos) cpu.simd_features.emplace_back(f);
  }
  const char* forced = std::getenv("BMSERVER_CPU_GEMM");
  absl::StatusOr<cpu::GemmPath> path = cpu::parse_gemm_path(forced != nullptr && *forced != '\0' ? forced : "auto");
  cpu.gemm_path = path.ok() ? std::string(cpu::gemm_path_name(*path)) : std::string(path.status().message());
  cpu.quantized_kernel = std::string(cpu::quantized_kernel_isa()) + "; 4-bit layers on " +
                         std::string(cpu::gemm_path_name(path.ok() ? *path : cpu::best_gemm_path()));
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) cpu.memory_total_bytes = static_cast<uint64_t>(pages) * page_size;
  return cpu;
}

}  // namespace

std::string cuda_plugin_path() {
  if (const char* env = std::getenv("BMSERVER_CUDA_PLUGIN"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "libbm_backend_cuda.so";
  return (exe.parent_path().parent_path() / "lib" / "bmserver" / "libbm_backend_cuda.so").string();
}

DeviceInfo detect_devices() {
  DeviceInfo info;
  probe_nvml(info);
  probe_cuda_plugin(info);
  info.cpu = probe_cpu();
  info.quantization_formats = {"gptq-int4", "gptq-int8", "awq-int4"};
  return info;
}

}  // namespace bm::engine
