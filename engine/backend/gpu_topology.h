#pragma once
// How two GPUs are connected, as `bmserver env` reports it (docs/tensor-parallel.md: each decode step's
// all-reduces cost several times more over PCIe than over NVLink). NVML answers the questions (device_info.cpp
// asks them); this is the reading of its answers, a pure function so that it is tested without a GPU.
#include <cstdint>
#include <string>

namespace bm::engine {

// NVML's nvmlGpuTopologyLevel_t (nvml.h; a stable ABI): the closest common ancestor of two GPUs on the PCIe tree.
enum class PcieAncestor : int32_t {
  kUnknown = -1,     // NVML could not say
  kInternal = 0,     // the same board (a dual-GPU card)
  kSingle = 10,      // one PCIe switch
  kMultiple = 20,    // several PCIe switches, no host bridge
  kHostBridge = 30,  // a CPU's host bridge
  kNode = 40,        // host bridges of one NUMA node
  kSystem = 50,      // across NUMA nodes (the CPUs' interconnect)
};

struct GpuLink {
  int32_t a = 0;  // GPU indices as `bmserver env` lists them (after CUDA_VISIBLE_DEVICES)
  int32_t b = 0;
  bool nvlink = false;         // nvmlDeviceGetP2PStatus(NVLINK) is OK: peer access over NVLink (or an NVSwitch)
  int32_t nvlinks_active = 0;  // a's active NVLinks (nvmlDeviceGetNvLinkState over its links)
  PcieAncestor pcie = PcieAncestor::kUnknown;
};

// One line: "NVLink (18 links active on GPU 0)", "PCIe through one switch (PIX)", "PCIe across NUMA nodes (SYS)",
// … — nvidia-smi topo -m's abbreviation in parentheses.
std::string describe_gpu_link(const GpuLink& link);

// nvidia-smi topo -m's abbreviation of a PCIe path ("PIX", …; "BOARD" for one board, "" unknown).
std::string pcie_ancestor_abbreviation(PcieAncestor ancestor);

// NVML's topology level as the enum; a value NVML may add later is kUnknown.
PcieAncestor pcie_ancestor_from_nvml(int32_t level);

}  // namespace bm::engine
