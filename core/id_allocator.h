// Object ids from a range, the lowest free id first: the ids Linux's xa_alloc() hands out
// (iommufd objects: XA_FLAGS_ALLOC1 with xa_limit_31b, so 1..INT_MAX), found in O(log n) per
// allocation and release instead of a scan of the ids in use.
#pragma once

#include <set>

#include "base/result.h"
#include "iommu/types.h"

namespace vfio_emu::core {

using iommu::u32;
using iommu::u64;

class IdAllocator {
 public:
  // Ids first..last (first <= last).
  IdAllocator(u32 first, u32 last) : first_(first), last_(last), next_(first) {}

  // The lowest id not in use. Errors: EBUSY when all are in use (xa_alloc's answer).
  Result<u32> alloc();
  // Gives back an id from alloc(); anything else is ignored.
  void free(u32 id);
  u64 in_use() const { return (next_ - first_) - freed_.size(); }

 private:
  const u32 first_;
  const u32 last_;
  u64 next_;             // every id from next_ up is free (u64: last_ may be UINT32_MAX)
  std::set<u32> freed_;  // the free ids below next_
};

}  // namespace vfio_emu::core
