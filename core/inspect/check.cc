#include "core/inspect/check.h"

#include <fmt/core.h>

#include <algorithm>

#include "core/inspect/world.h"
#include "core/iommufd/ctx.h"

namespace vfio_emu::core::inspect {

void CheckReport::difference(const std::string& where, const char* kind, const Run& r) {
  if (differences_.size() >= 100) return;
  differences_.push_back({{"where", where},
                          {"kind", kind},
                          {"iova", hex(r.iova)},
                          {"last", hex(r.last)},
                          {"output", hex(r.output)},
                          {"prot", prot_name(r.prot)}});
}

void CheckReport::compare(const std::string& where, const iommu::Domain& hw,
                          std::vector<Run> want) {
  ++checked_;
  std::sort(want.begin(), want.end(), [](const Run& a, const Run& b) { return a.iova < b.iova; });
  std::vector<Run> merged;
  for (const Run& r : want) {
    if (!merged.empty() && merged.back().last + 1 == r.iova &&
        merged.back().output + (merged.back().last - merged.back().iova + 1) == r.output &&
        merged.back().prot == r.prot) {
      merged.back().last = r.last;
    } else {
      merged.push_back(r);
    }
  }
  const std::vector<Run> have = leaf_runs(hw);
  size_t i = 0, k = 0;
  while (i < merged.size() || k < have.size()) {
    if (k == have.size()) {
      difference(where, "missing from the page table", merged[i++]);
    } else if (i == merged.size()) {
      difference(where, "in the page table but not recorded", have[k++]);
    } else if (merged[i].iova == have[k].iova && merged[i].last == have[k].last &&
               merged[i].output == have[k].output && merged[i].prot == have[k].prot) {
      ++i;
      ++k;
    } else if (merged[i].iova <= have[k].iova) {
      difference(where, "recorded but mapped differently", merged[i++]);
    } else {
      difference(where, "in the page table but not recorded", have[k++]);
    }
  }
}

Json CheckReport::result() const {
  return {{"ok", differences_.empty()}, {"checked", checked_}, {"differences", differences_}};
}

Json check(Emulator& emu) {
  CheckReport report;
  std::lock_guard lock(emu.mu);
  World w = gather(emu);
  for (auto& [id, c] : w.containers) {
    std::lock_guard clock(c->mu);
    if (c->driver) c->driver->check("container " + std::to_string(id), report);
  }
  for (auto& [id, ctx] : w.contexts) {
    std::lock_guard xlock(ctx->mu);
    for (const auto& [oid, obj] : ctx->objects) {
      if (obj->type != ObjType::kIoas) continue;
      auto& ioas = static_cast<Ioas&>(*obj);
      std::lock_guard ilock(ioas.mu);
      std::vector<Run> want;
      for (const auto& [iova, a] : ioas.iopt.areas())
        want.push_back(Run{a.iova, a.last, a.user_va(), static_cast<Prot>(a.prot & iommu::kProtRW)});
      for (const Hwpt* h : ioas.hwpts) {
        if (!h->domain) continue;
        report.compare(fmt::format("iommufd {} ioas {} hwpt {} domain {}", id, oid, h->id,
                                   h->domain->id),
                       *h->domain->hw, want);
      }
    }
  }
  return report.result();
}

}  // namespace vfio_emu::core::inspect
