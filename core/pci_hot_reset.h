// PCI hot reset of a device file: VFIO_DEVICE_GET_PCI_HOT_RESET_INFO and VFIO_DEVICE_PCI_HOT_RESET
// (drivers/vfio/pci/vfio_pci_core.c, 7.3: vfio_pci_ioctl_get_pci_hot_reset_info,
// vfio_pci_ioctl_pci_hot_reset, vfio_pci_dev_set_hot_reset).
//
// Which reset a function has comes from the topology (DeviceSpec::hot_reset):
//   - a slot reset (pci_probe_reset_slot succeeds) resets every function of the slot: the
//     devices with the same segment, bus and device number;
//   - otherwise a bus reset, when the function sits on a bus behind a bridge (bus number not 0:
//     bus 0 of a segment is its root bus, which no bridge can reset) and no function on that bus
//     refuses one (PCI_DEV_FLAGS_NO_BUS_RESET, `hot_reset = "none"`); it resets every function
//     on the bus;
//   - neither: both ioctls fail with ENODEV, as for QEMU's pci-testdev at 00:01.0 under Linux.
// Every emulated function is bound to vfio-pci, so every affected function is in the reset's
// dev_set. Ownership is proven as Linux asks: the group fds of every affected function
// (group-path device files), or, for a cdev-bound device and an empty array, that every
// affected function is bound to the caller's iommufd or its group is.
#pragma once

#include <vector>

#include "core/command.h"
#include "core/objects.h"

namespace vfio_emu::core {

class Emulator;

enum class ResetScopeKind : u8 { kNone, kSlot, kBus };

struct ResetScope {
  ResetScopeKind kind = ResetScopeKind::kNone;
  std::vector<Device*> devices;  // the functions reset with the device, itself included
};

// What a slot or bus reset of `dev` resets (the topology's, so no lock is needed).
ResetScope hot_reset_scope(const Emulator& emu, const Device& dev);

namespace device_ioctl {
IoctlHandler get_pci_hot_reset_info, pci_hot_reset;
}

}  // namespace vfio_emu::core
