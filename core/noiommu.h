// vfio-noiommu: the IOMMU driver of a container that holds no-IOMMU groups
// (drivers/vfio/container.c, vfio_noiommu_ops), in enable_unsafe_noiommu_mode. It translates
// nothing and serves no ioctl: the program gets the device (regions, interrupts) and nothing
// isolates what the device does.
#pragma once

#include <memory>

#include "core/objects.h"

namespace vfio_emu::core {

// vfio_noiommu_ioctl(CHECK_EXTENSION): VFIO_NOIOMMU_IOMMU while the mode is on, anything else 0.
long noiommu_check_extension(bool mode_enabled, u32 ext);

class NoIommuDriver final : public IommuDriver {
 public:
  u32 type() const override;
  std::string_view name() const override { return "vfio-noiommu"; }
  Status attach_group(Group&, IoctlCall&) override { return {}; }
  void detach_group(Group&) override {}
  long check_extension(u32 ext) const override { return noiommu_check_extension(true, ext); }
  // Every other container ioctl: ENOTTY.
  Status ioctl_prologue(const IoctlCall& call) const override;
  // Bus addresses of a no-IOMMU device are host physical addresses, which a user-space
  // emulator cannot reach: every DMA of the device fails (dma_translate's ENXIO).

  std::vector<std::shared_ptr<HwDomain>> domains() const override { return {}; }
  nlohmann::ordered_json describe() const override;
  void visit_mappings(u64, std::optional<pid_t>,
                      const std::function<bool(const MappingView&)>&) const override {}
  void check(const std::string&, inspect::CheckReport&) const override {}
};

}  // namespace vfio_emu::core
