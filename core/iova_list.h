// Sorted, disjoint lists of inclusive IOVA ranges: apertures intersected, reserved regions cut
// out. Shared by type1 (its "IOVA list") and iommufd (allowed and reserved ranges).
#pragma once

#include <vector>

#include "iommu/types.h"

namespace vfio_emu::core {

using IovaList = std::vector<iommu::IovaRange>;

// The part of `list` inside `window`.
IovaList intersect(const IovaList& list, const iommu::IovaRange& window);
// `list` without `hole`.
IovaList subtract(const IovaList& list, const iommu::IovaRange& hole);
// True if one range of `list` contains all of [first, last].
bool contains(const IovaList& list, iommu::u64 first, iommu::u64 last);
// True if any range of `list` overlaps [first, last].
bool overlaps(const IovaList& list, iommu::u64 first, iommu::u64 last);

}  // namespace vfio_emu::core
