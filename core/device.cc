// Placeholder until the device cdev lands: nothing can be bound yet.
#include "core/device.h"

#include "core/dispatcher.h"

namespace vfio_emu::core {

void release_device_file(Emulator&, DeviceFile&) {}
Result<u64> device_read(Emulator&, DeviceFile&, u64, void*, u64) { return err(EINVAL); }
Result<u64> device_write(Emulator&, DeviceFile&, u64, const void*, u64) { return err(EINVAL); }
std::span<const Command> device_commands() { return {}; }

}  // namespace vfio_emu::core
