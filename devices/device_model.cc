#include "devices/device_model.h"

#include <cerrno>

#include "devices/ioat/ioat_function.h"
#include "devices/pci_testdev/pci_testdev.h"
#include "devices/testdev/testdev.h"

namespace vfio_emu::devices {

Result<std::unique_ptr<DeviceModel>> make_device_model(std::string_view name, const PciIds& ids) {
  if (name == "testdev") return std::unique_ptr<DeviceModel>(std::make_unique<TestDevice>(ids));
  // The I/OAT function has Intel's ids whatever the topology says: the drivers match them.
  if (name == "ioat") return std::unique_ptr<DeviceModel>(std::make_unique<ioat::IoatFunction>());
  // QEMU's pci-testdev has its own ids as the real one does (no properties change them).
  if (name == "pci-testdev")
    return std::unique_ptr<DeviceModel>(std::make_unique<PciTestDevice>());
  return Err{EINVAL};
}

std::string known_models() { return "testdev, ioat, pci-testdev"; }

}  // namespace vfio_emu::devices
