// The VFIO device cdev (/dev/vfio/devices/vfioN): BIND_IOMMUFD, ATTACH/DETACH_IOMMUFD_PT, and
// once bound DEVICE_GET_INFO, GET_REGION_INFO, GET_IRQ_INFO, SET_IRQS (core/device_irqs.h),
// RESET, FEATURE, and pread/pwrite of the regions (PCI config space and BAR0) at their VFIO region
// offsets (drivers/vfio/device_cdev.c, vfio_main.c, pci/vfio_pci_core.c, pci/vfio_pci_config.c;
// spec §5.10).
//
// What the device is (config space, BARs, reset, DMA, interrupts) is its model's
// (devices/device_model.h: the passive testdev, the I/OAT engine); its interrupt counts come from
// its config space (core/device_irqs.h irq_count). No device is an SR-IOV PF or VF, and none
// supports migration or DMA logging; runtime low power is there, as for every vfio-pci device.
// Regions carry VFIO_REGION_INFO_FLAG_MMAP only where the transport maps BARs (FUSE passthrough,
// enable_bar_mmap); hot reset is core/pci_hot_reset.h.
#pragma once

#include <memory>

#include "core/command.h"
#include "core/objects.h"

namespace vfio_emu::core {

class DeviceIrqs;
class IommufdCtx;

class DeviceFile final : public File {
 public:
  DeviceFile(u64 id, pid_t opener, Device* d) : File(NodeKind::kDevice, id, opener), device(d) {}
  Device* device;
  // Under Emulator::mu. Set by a successful BIND_IOMMUFD; every other ioctl needs it.
  std::shared_ptr<IommufdCtx> ictx;
  u32 devid = 0;     // the iommufd device object id (out_devid)
  u32 pt_id = 0;     // the HWPT attached (0: none)
  // Set by VFIO_EMU_DEVICE_USE_GROUP: this file is what VFIO_GROUP_GET_DEVICE_FD would return
  // (Linux's df->group). Its DMA goes through the group's container, or through the group's
  // iommufd (then ictx/devid are set too, bound by the group path).
  Group* via_group = nullptr;
  // The device's interrupt (and runtime power) state, shared by the files that have the device
  // open; set when access is granted, dropped at release. The device's last file tears it down.
  std::shared_ptr<DeviceIrqs> irqs;
  bool bound() const { return ictx != nullptr; }
  // Linux's df->access_granted: a successful BIND, or an open through the group.
  bool access_granted() const { return ictx != nullptr || via_group != nullptr; }
};

// vfio_iommufd_device_ictx / vfio_iommufd_device_id: the iommufd context the device is bound
// to and its device object id there (*devid): through its cdev, or by a group-path file on a
// group set to an iommufd. nullptr (devid untouched) when neither. Emulator::mu held.
std::shared_ptr<IommufdCtx> device_iommufd(const Device& d, u32* devid);

// The last close of a device file: detaches and unbinds (Emulator::mu held). The device's
// iommufd context goes with it if nothing else holds it. A group file whose release waited for
// its last group-path device file is released then. If it was the device's last open file, the
// device's interrupts are disabled and their eventfds closed (vfio_pci_core_disable).
void release_device_file(Emulator& emu, DeviceFile& f);

// pread/pwrite on a bound device file at a region offset (VFIO_PCI_INDEX_TO_OFFSET(index) + off).
// Returns the bytes done (BAR accesses are cut at the end of the BAR; 0 for len 0).
// Errors: EINVAL if the file is not bound, the region index is not one of vfio-pci's, the region
// is empty (BAR1-5, ROM, VGA), a write targets the ROM, or the offset is at or past the end of
// BAR0; EFAULT for a config space access that does not fit in its 256 bytes (vfio_config_do_rw).
Result<u64> device_read(Emulator& emu, DeviceFile& f, u64 offset, void* buf, u64 len);
Result<u64> device_write(Emulator& emu, DeviceFile& f, u64 offset, const void* buf, u64 len);

// A store of `width` bytes (1, 2, 4, 8) that a program made to a mapping of BAR `bar` at `pos`,
// trapped by `vfio-emu run` (DeviceModel::bar_stores_trapped, tools/store_watch.h): the model
// takes it as a region write would. Errors: EINVAL for a BAR whose stores are not trapped, a bad
// width, or a store not wholly inside the BAR; EIO with memory decoding off (Linux's
// vfio_pci_mmap_fault gives SIGBUS then).
Status device_bar_store(Device& dev, u32 bar, u64 pos, u64 value, u32 width);

// The device cdev's ioctls (VFIO_DEVICE_SET_IRQS is set_irqs_ioctl, core/device_irqs.h).
namespace device_ioctl {
IoctlHandler use_group, get_info, get_region_info, get_irq_info, reset, device_feature,
    bind_iommufd, attach_pt, detach_pt;
}

// VFIO_PCI_INDEX_TO_OFFSET.
constexpr u64 kVfioPciOffsetShift = 40;
constexpr u64 vfio_pci_index_to_offset(u32 index) { return u64{index} << kVfioPciOffsetShift; }

}  // namespace vfio_emu::core
