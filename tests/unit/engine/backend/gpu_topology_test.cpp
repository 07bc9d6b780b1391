// GPU topology as `bmserver env` reports it: the reading of NVML's answers (a pure function, every level), and
// on this machine what detect_devices says when NVML is absent (no GPU is needed for either).
#include "engine/backend/gpu_topology.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include "engine/backend/device_info.h"

namespace bm::engine {
namespace {

TEST(GpuTopology, EveryNvmlLevelReadsAsItsPcieTextAndUnknownLevelsSaySo) {
  const std::pair<int32_t, std::string> cases[] = {
      {0, "PCIe on one board"},
      {10, "PCIe through one switch (PIX)"},
      {20, "PCIe through several switches (PXB)"},
      {30, "PCIe through a CPU host bridge (PHB)"},
      {40, "PCIe across host bridges of one NUMA node (NODE)"},
      {50, "PCIe across NUMA nodes (SYS)"},
      {60, "PCIe (NVML did not say which path)"},
      {-1, "PCIe (NVML did not say which path)"},
  };
  for (const auto& [level, text] : cases) {
    GpuLink link{0, 1, false, 0, pcie_ancestor_from_nvml(level)};
    EXPECT_EQ(describe_gpu_link(link), text) << "level " << level;
  }
  EXPECT_EQ(pcie_ancestor_abbreviation(pcie_ancestor_from_nvml(50)), "SYS");
  EXPECT_EQ(pcie_ancestor_abbreviation(pcie_ancestor_from_nvml(10)), "PIX");
  EXPECT_EQ(pcie_ancestor_abbreviation(pcie_ancestor_from_nvml(7)), "");
}

TEST(GpuTopology, NvlinkWinsOverThePcieAncestorAndCountsTheLinks) {
  EXPECT_EQ(describe_gpu_link(GpuLink{2, 3, true, 18, PcieAncestor::kSystem}), "NVLink (18 links active on GPU 2)");
  EXPECT_EQ(describe_gpu_link(GpuLink{0, 1, true, 1, PcieAncestor::kNode}), "NVLink (1 link active on GPU 0)");
  EXPECT_EQ(describe_gpu_link(GpuLink{0, 1, true, 0, PcieAncestor::kUnknown}), "NVLink");
}

// Without libnvidia-ml the field says so in a sentence and lists no link; with it, every pair of two or more
// GPUs has a link, or the status says why not.
TEST(GpuTopology, DetectDevicesSaysWhenNvmlIsAbsent) {
  const DeviceInfo info = detect_devices();
  void* nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (nvml == nullptr) {
    EXPECT_EQ(info.topology_status, "NVML not available (libnvidia-ml.so.1 could not be loaded)");
    EXPECT_TRUE(info.gpu_links.empty());
    return;
  }
  dlclose(nvml);
  const size_t n = info.gpus.size();
  if (n >= 2 && info.topology_status.empty()) {
    EXPECT_EQ(info.gpu_links.size(), n * (n - 1) / 2);
  } else {
    EXPECT_FALSE(info.topology_status.empty());
  }
}

}  // namespace
}  // namespace bm::engine
