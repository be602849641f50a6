#include "core/inspect/leaf_runs.h"

#include <optional>

namespace vfio_emu::core::inspect {

using iommu::LeafView;

void walk_until(const iommu::Domain& d, u64 first, u64 last,
                const std::function<bool(const LeafView&)>& visit) {
  bool stopped = false;
  u64 pos = first, span = u64{2} << 20;
  for (bool first_window = true;; first_window = false) {
    const u64 end = last - pos < span ? last : pos + (span - 1);
    const u64 window = pos;
    d.walk(pos, end, [&](const LeafView& l) {
      // A leaf across the window's start was visited with the window before.
      if (stopped || (!first_window && l.iova < window)) return;
      stopped = !visit(l);
    });
    if (stopped || end == last) return;
    pos = end + 1;
    if (span < (u64{1} << 62)) span *= 2;
  }
}

void for_each_run(const iommu::Domain& d, u64 first, u64 last,
                  const std::function<bool(const Run&)>& visit) {
  std::optional<Run> run;
  bool stopped = false;
  walk_until(d, first, last, [&](const LeafView& l) {
    const iommu::Prot p = l.prot & iommu::kProtRW;
    if (run && run->last + 1 == l.iova && run->output + (run->last - run->iova + 1) == l.output &&
        run->prot == p) {
      run->last = l.iova + (l.size - 1);
      return true;
    }
    if (run && !visit(*run)) return !(stopped = true);
    run = Run{l.iova, l.iova + (l.size - 1), l.output, p};
    return true;
  });
  if (run && !stopped) visit(*run);
}

std::vector<Run> leaf_runs(const iommu::Domain& d) {
  std::vector<Run> runs;
  for_each_run(d, 0, kU64Max, [&](const Run& r) {
    runs.push_back(r);
    return true;
  });
  return runs;
}

}  // namespace vfio_emu::core::inspect
