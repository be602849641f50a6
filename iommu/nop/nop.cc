#include "iommu/nop/nop.h"

#include <cerrno>

namespace vfio_emu::iommu::nop {

Result<u64> NopDomain::map(u64, u64, u64, Prot) { return err(EOPNOTSUPP); }

Result<u64> NopDomain::unmap(u64 first, u64 last) {
  if (first > last) return err(EINVAL);
  return u64{0};
}

Translation NopDomain::translate(u64, Access) const {
  Translation t;
  t.fault = FaultReason::kOutOfAperture;
  return t;
}

Result<std::unique_ptr<Domain>> NopUnit::create_domain() {
  return std::unique_ptr<Domain>(new NopDomain());
}

}  // namespace vfio_emu::iommu::nop
