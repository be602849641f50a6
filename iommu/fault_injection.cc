#include "iommu/fault_injection.h"

namespace vfio_emu::iommu::fault_injection {
namespace {
thread_local unsigned countdown = 0;
}

void fail_nth(unsigned n) { countdown = n; }

bool consumed() { return countdown == 0; }

bool should_fail() {
  if (countdown == 0) return false;
  return --countdown == 0;
}

}  // namespace vfio_emu::iommu::fault_injection
