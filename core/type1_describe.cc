// What the tools show of a type1 container (IommuDriver's describe, visit_mappings and check).
#include <nlohmann/json.hpp>

#include "core/inspect/check.h"
#include "core/inspect/format.h"
#include "core/type1.h"

namespace vfio_emu::core {

nlohmann::ordered_json Type1Driver::describe() const {
  inspect::Json j;
  j["mappings"] = dmas_.size();
  j["iova_pgsizes"] = inspect::hex(pgsize_bitmap_);
  j["iova_ranges"] = inspect::ranges_json(iova_list_);
  return j;
}

void Type1Driver::visit_mappings(u64 first, std::optional<pid_t> pid,
                                 const std::function<bool(const MappingView&)>& visit) const {
  for (auto it = dmas_.lower_bound(first); it != dmas_.end(); ++it) {
    const Type1Dma& dma = it->second;
    if (pid && *pid != dma.owner) continue;
    const char* state =
        dma.vaddr_invalid ? "vaddr-invalid" : dma.iommu_mapped ? "mapped" : "recorded";
    if (!visit(MappingView{dma.iova, dma.last(), dma.vaddr, dma.owner, dma.prot, state})) return;
  }
}

void Type1Driver::check(const std::string& where, inspect::CheckReport& report) const {
  std::vector<inspect::Run> want;
  for (const auto& [iova, dma] : dmas_)
    if (dma.iommu_mapped) want.push_back(inspect::Run{dma.iova, dma.last(), dma.output, dma.prot});
  for (const auto& d : domains())
    report.compare(where + " domain " + std::to_string(d->id), *d->hw, want);
}

}  // namespace vfio_emu::core
