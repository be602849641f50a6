#include "core/inspect/format.h"

#include <fmt/core.h>

namespace vfio_emu::core::inspect {

std::string hex(u64 v) { return fmt::format("{:#x}", v); }

std::string prot_name(iommu::Prot p) {
  return std::string((p & iommu::kProtRead) ? "r" : "-") + ((p & iommu::kProtWrite) ? "w" : "-");
}

Json page_sizes_json(u64 bitmap) {
  Json a = Json::array();
  for (int b = 0; b < 64; ++b)
    if (bitmap & (u64{1} << b)) a.push_back(u64{1} << b);
  return a;
}

Json ranges_json(const std::vector<iommu::IovaRange>& rs) {
  Json a = Json::array();
  for (const iommu::IovaRange& r : rs) a.push_back({{"first", hex(r.first)}, {"last", hex(r.last)}});
  return a;
}

}  // namespace vfio_emu::core::inspect
