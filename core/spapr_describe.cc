// What the tools show of a sPAPR TCE container (IommuDriver's describe, visit_mappings and
// check).
#include <nlohmann/json.hpp>

#include "core/inspect/check.h"
#include "core/inspect/format.h"
#include "core/inspect/leaf_runs.h"
#include "core/spapr.h"

namespace vfio_emu::core {

nlohmann::ordered_json SpaprDriver::describe() const {
  using inspect::hex;
  inspect::Json j;
  j["owner_pid"] = mm_;
  j["enabled"] = enabled_;
  j["default_window_pending"] = def_window_pending_;
  j["windows"] = inspect::Json::array();
  for (const auto& win : windows())
    j["windows"].push_back({{"slot", win.slot},
                            {"start", hex(win.bus_start)},
                            {"size", win.size},
                            {"page_shift", win.page_shift},
                            {"levels", win.levels}});
  j["registered"] = inspect::Json::array();
  for (const auto& r : regions_)
    j["registered"].push_back({{"vaddr", hex(r.vaddr)}, {"size", r.size}, {"listed", r.listed}});
  j["locked_bytes"] = locked_bytes();
  return j;
}

// sPAPR keeps no record of MAP calls: the TCEs are the mappings, all of the bound process.
void SpaprDriver::visit_mappings(u64 first, std::optional<pid_t> pid,
                                 const std::function<bool(const MappingView&)>& visit) const {
  if (!domain_ || (pid && *pid != mm_)) return;
  inspect::for_each_run(*domain_->hw, first, kU64Max, [&](const inspect::Run& r) {
    return visit(MappingView{r.iova, r.last, r.output, mm_, r.prot, "mapped"});
  });
}

// Every TCE of a v2 container must point into memory registered with it (v1 registers none).
void SpaprDriver::check(const std::string& where, inspect::CheckReport& report) const {
  if (!domain_ || !v2_) return;
  report.count_checked();
  const std::string table = where + " domain " + std::to_string(domain_->id);
  for (const inspect::Run& r : inspect::leaf_runs(*domain_->hw)) {
    const u64 out_last = r.output + (r.last - r.iova);
    bool inside = false;
    for (const auto& reg : regions_) inside |= r.output >= reg.vaddr && out_last <= reg.last();
    if (!inside) report.difference(table, "TCE outside registered memory", r);
  }
}

}  // namespace vfio_emu::core
