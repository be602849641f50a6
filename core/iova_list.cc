#include "core/iova_list.h"

#include <algorithm>

namespace vfio_emu::core {

using iommu::IovaRange;
using iommu::u64;

IovaList intersect(const IovaList& list, const IovaRange& window) {
  IovaList out;
  for (const IovaRange& r : list) {
    if (!r.overlaps(window)) continue;
    out.push_back(IovaRange{std::max(r.first, window.first), std::min(r.last, window.last)});
  }
  return out;
}

IovaList subtract(const IovaList& list, const IovaRange& hole) {
  IovaList out;
  for (const IovaRange& r : list) {
    if (!r.overlaps(hole)) {
      out.push_back(r);
      continue;
    }
    if (r.first < hole.first) out.push_back(IovaRange{r.first, hole.first - 1});
    if (r.last > hole.last) out.push_back(IovaRange{hole.last + 1, r.last});
  }
  return out;
}

bool contains(const IovaList& list, u64 first, u64 last) {
  for (const IovaRange& r : list)
    if (r.first <= first && last <= r.last) return true;
  return false;
}

bool overlaps(const IovaList& list, u64 first, u64 last) {
  for (const IovaRange& r : list)
    if (r.overlaps(IovaRange{first, last})) return true;
  return false;
}

}  // namespace vfio_emu::core
