#include "core/noiommu.h"

#include <nlohmann/json.hpp>

#include "core/reject.h"
#include "core/uapi/vfio.h"

namespace vfio_emu::core {

using namespace uapi;

long noiommu_check_extension(bool mode_enabled, u32 ext) {
  return mode_enabled && ext == VFIO_NOIOMMU_IOMMU ? 1 : 0;
}

u32 NoIommuDriver::type() const { return VFIO_NOIOMMU_IOMMU; }

Status NoIommuDriver::ioctl_prologue(const IoctlCall& call) const {
  return reject(call, ENOTTY, "cmd {:#x}: the vfio-noiommu driver serves no ioctl", call.cmd);
}

nlohmann::ordered_json NoIommuDriver::describe() const {
  nlohmann::ordered_json j;
  j["translation"] = "none (no-IOMMU mode)";
  return j;
}

}  // namespace vfio_emu::core
