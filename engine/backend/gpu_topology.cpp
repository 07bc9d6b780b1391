#include "engine/backend/gpu_topology.h"

#include "absl/strings/str_cat.h"

namespace bm::engine {
namespace {

struct AncestorText {
  PcieAncestor level;
  const char* abbreviation;
  const char* text;
};

// nvidia-smi topo -m's legend, in words.
constexpr AncestorText kAncestors[] = {
    {PcieAncestor::kInternal, "BOARD", "PCIe on one board"},
    {PcieAncestor::kSingle, "PIX", "PCIe through one switch (PIX)"},
    {PcieAncestor::kMultiple, "PXB", "PCIe through several switches (PXB)"},
    {PcieAncestor::kHostBridge, "PHB", "PCIe through a CPU host bridge (PHB)"},
    {PcieAncestor::kNode, "NODE", "PCIe across host bridges of one NUMA node (NODE)"},
    {PcieAncestor::kSystem, "SYS", "PCIe across NUMA nodes (SYS)"},
};

}  // namespace

std::string pcie_ancestor_abbreviation(PcieAncestor ancestor) {
  for (const AncestorText& a : kAncestors)
    if (a.level == ancestor) return a.abbreviation;
  return "";
}

PcieAncestor pcie_ancestor_from_nvml(int32_t level) {
  for (const AncestorText& a : kAncestors)
    if (static_cast<int32_t>(a.level) == level) return a.level;
  return PcieAncestor::kUnknown;
}

std::string describe_gpu_link(const GpuLink& link) {
  if (link.nvlink) {
    if (link.nvlinks_active <= 0) return "NVLink";
    return absl::StrCat("NVLink (", link.nvlinks_active, link.nvlinks_active == 1 ? " link" : " links",
                        " active on GPU ", link.a, ")");
  }
  for (const AncestorText& a : kAncestors)
    if (a.level == link.pcie) return a.text;
  return "PCIe (NVML did not say which path)";
}

}  // namespace bm::engine
