#include "devices/device_model.h"

#include <cerrno>

#include "devices/testdev/testdev.h"

namespace vfio_emu::devices {

Result<std::unique_ptr<DeviceModel>> make_device_model(std::string_view name, const PciIds& ids) {
  if (name == "testdev") return std::unique_ptr<DeviceModel>(std::make_unique<TestDevice>(ids));
  return Err{EINVAL};
}

std::string known_models() { return "testdev"; }

}  // namespace vfio_emu::devices
