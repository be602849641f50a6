// A page table's present leaves, walked in IOVA order and merged into runs: what `maps` shows of
// a domain (and of sPAPR, whose TCEs are its mappings) and what `check` compares.
#pragma once

#include <functional>
#include <vector>

#include "iommu/domain.h"

namespace vfio_emu::core::inspect {

// Leaves merged into runs of contiguous IOVA, contiguous output and equal permissions.
struct Run {
  u64 iova, last, output;
  iommu::Prot prot;
};

// Calls `visit` for each present leaf intersecting [first, last], in IOVA order, until it
// returns false. Domain::walk cannot stop, so the range is walked in windows growing from 2 MiB:
// a page of a big table does not cost a walk of the whole rest of it.
void walk_until(const iommu::Domain& d, u64 first, u64 last,
                const std::function<bool(const iommu::LeafView&)>& visit);

// Calls `visit` with each run starting in [first, last], in IOVA order, once it is complete (its
// next leaf was seen, or the walk ended), until `visit` returns false.
void for_each_run(const iommu::Domain& d, u64 first, u64 last,
                  const std::function<bool(const Run&)>& visit);

// Every run of the table.
std::vector<Run> leaf_runs(const iommu::Domain& d);

}  // namespace vfio_emu::core::inspect
