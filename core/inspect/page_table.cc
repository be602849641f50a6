#include "core/inspect/page_table.h"

#include <algorithm>
#include <optional>
#include <vector>

#include "core/inspect/leaf_runs.h"
#include "core/inspect/world.h"
#include "iommu/tce/tce.h"
#include "iommu/vtd/vtd.h"

namespace vfio_emu::core::inspect {

using iommu::LeafView;

Result<Json> page_table(Emulator& emu, u64 domain, u64 first, u64 last, size_t max) {
  auto d = find_domain(emu, domain);
  if (!d) return err(ENOENT);
  auto mu = d->owner_mu.lock();
  if (!mu) return err(ENOENT);
  std::lock_guard lock(*mu);
  Json j;
  j["domain"] = d->id;
  j["unit"] = d->unit->name();
  j["model"] = std::string(iommu::model_name(d->unit->model()));
  j["levels"] = d->hw->levels();
  // The first leaf that did not fit: where the next page starts.
  std::optional<u64> next;
  size_t rows = 0;
  if (d->unit->model() == iommu::Model::kTce) {
    const auto& tce = static_cast<const iommu::tce::TceDomain&>(*d->hw);
    const auto& windows = tce.windows();
    j["windows"] = Json::array();
    for (const auto& w : windows) {
      Json wj{{"slot", w.slot},           {"start", hex(w.bus_start)}, {"size", w.size},
              {"page_shift", w.page_shift}, {"levels", w.levels},     {"level_entries", u64{1} << w.level_bits},
              {"table_bytes", w.table_bytes}};
      wj["entries"] = Json::array();
      j["windows"].push_back(wj);
    }
    // Listed by slot, filled in bus-address order: a page ends at one address.
    std::vector<size_t> by_address(windows.size());
    for (size_t i = 0; i < by_address.size(); ++i) by_address[i] = i;
    std::sort(by_address.begin(), by_address.end(),
              [&](size_t a, size_t b) { return windows[a].bus_start < windows[b].bus_start; });
    for (const size_t i : by_address) {
      const auto& w = windows[i];
      Json& entries = j["windows"][i]["entries"];
      const u64 lo = std::max(first, w.bus_start);
      const u64 hi = std::min(last, w.bus_start + (w.size - 1));
      if (lo > hi || next) continue;
      walk_until(tce, lo, hi, [&](const LeafView& l) {
        if (rows == max) return next = l.iova, false;
        ++rows;
        entries.push_back({{"index", (l.iova - w.bus_start) >> w.page_shift},
                           {"bus", hex(l.iova)},
                           {"tce", hex(l.path[static_cast<size_t>(l.top_level - 1)])},
                           {"output", hex(l.output)},
                           {"prot", prot_name(l.prot)}});
        return true;
      });
    }
  } else {
    j["rows"] = Json::array();
    walk_until(*d->hw, first, last, [&](const LeafView& l) {
      if (rows == max) return next = l.iova, false;
      ++rows;
      Json entries = Json::array();
      for (int i = 0; i < l.top_level; ++i) entries.push_back(hex(l.path[static_cast<size_t>(i)]));
      j["rows"].push_back({{"iova", hex(l.iova)},
                           {"iova_pfn", hex(l.iova >> 12)},
                           {"level", l.level},
                           {"size", l.size},
                           {"output", hex(l.output)},
                           {"prot", prot_name(l.prot)},
                           {"entries", entries}});
      return true;
    });
  }
  j["truncated"] = next.has_value();
  j["next"] = next ? Json(hex(*next)) : Json(nullptr);
  return j;
}

Result<Json> translate(Emulator& emu, u64 domain, u64 iova, iommu::Access access) {
  auto d = find_domain(emu, domain);
  if (!d) return err(ENOENT);
  auto mu = d->owner_mu.lock();
  if (!mu) return err(ENOENT);
  std::lock_guard lock(*mu);
  const iommu::Translation t = d->hw->translate(iova, access);
  Json j;
  j["domain"] = d->id;
  j["unit"] = d->unit->name();
  j["model"] = std::string(iommu::model_name(d->unit->model()));
  j["iova"] = hex(iova);
  j["access"] = access == iommu::Access::kRead ? "read" : "write";
  j["steps"] = Json::array();
  for (int i = 0; i < t.nsteps; ++i) {
    const auto& s = t.steps[static_cast<size_t>(i)];
    j["steps"].push_back({{"level", s.level},
                          {"table", hex(s.table)},
                          {"index", s.index},
                          {"entry", hex(s.entry)}});
  }
  j["ok"] = t.ok();
  if (t.ok()) {
    j["output"] = hex(t.output);
    j["page_size"] = t.page_size;
    j["prot"] = prot_name(t.prot);
  } else {
    Json f{{"reason", std::string(iommu::fault_reason_name(t.fault))}, {"level", t.fault_level}};
    if (d->unit->model() == iommu::Model::kVtd) {
      // What a VT-d fault-recording register would hold (QEMU's numbering).
      using iommu::vtd::FaultCode;
      const FaultCode code = t.fault == iommu::FaultReason::kOutOfAperture
                                 ? FaultCode::kAddrBeyondMgaw
                             : access == iommu::Access::kRead ? FaultCode::kRead
                                                              : FaultCode::kWrite;
      f["vtd_fault_reason"] = hex(static_cast<u64>(code));
    }
    j["fault"] = f;
  }
  return j;
}

}  // namespace vfio_emu::core::inspect
