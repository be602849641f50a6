// The VFIO device cdev (/dev/vfio/devices/vfioN): BIND_IOMMUFD, ATTACH/DETACH_IOMMUFD_PT, and
// once bound DEVICE_GET_INFO, GET_REGION_INFO, GET_IRQ_INFO, RESET, and pread/pwrite of the
// regions (PCI config space and BAR0) at their VFIO region offsets.
#pragma once

#include <memory>

#include "core/objects.h"

namespace vfio_emu::core {

class IommufdCtx;

class DeviceFile final : public File {
 public:
  DeviceFile(u64 id, pid_t opener, Device* d) : File(NodeKind::kDevice, id, opener), device(d) {}
  Device* device;
  // Under Emulator::mu. Set by a successful BIND_IOMMUFD; every other ioctl needs it.
  std::shared_ptr<IommufdCtx> ictx;
  u32 devid = 0;     // the iommufd device object id (out_devid)
  u32 pt_id = 0;     // the HWPT attached (0: none)
  bool bound() const { return ictx != nullptr; }
};

// The last close of a device file: detaches and unbinds (Emulator::mu held).
void release_device_file(Emulator& emu, DeviceFile& f);

// pread/pwrite on a bound device file at a region offset (VFIO_PCI_INDEX_TO_OFFSET(index) + off).
// Errors: EINVAL if the file is not bound or the offset is outside every region.
Result<u64> device_read(Emulator& emu, DeviceFile& f, u64 offset, void* buf, u64 len);
Result<u64> device_write(Emulator& emu, DeviceFile& f, u64 offset, const void* buf, u64 len);

}  // namespace vfio_emu::core
