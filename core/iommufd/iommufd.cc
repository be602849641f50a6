// Placeholder until the iommufd module lands.
#include "core/iommufd/iommufd.h"

#include "core/dispatcher.h"

namespace vfio_emu::core {

class IommufdCtx {};

std::shared_ptr<IommufdCtx> make_iommufd_ctx(Emulator&, u64) { return std::make_shared<IommufdCtx>(); }
void release_iommufd_file(Emulator&, IommufdFile&) {}
Status iommufd_attach_group(Emulator&, const std::shared_ptr<IommufdCtx>&, Group&) { return err(EINVAL); }
void iommufd_detach_group(Emulator&, IommufdCtx&, Group&) {}
Result<u32> iommufd_bind_device(Emulator&, IommufdCtx&, Device&) { return err(EINVAL); }
void iommufd_unbind_device(Emulator&, IommufdCtx&, u32) {}
Result<u32> iommufd_attach_device(Emulator&, IommufdCtx&, u32, u32, IoctlCall&) { return err(EINVAL); }
void iommufd_detach_device(Emulator&, IommufdCtx&, u32) {}
std::span<const Command> iommufd_commands() { return {}; }
std::span<const Command> iommufd_compat_commands() { return {}; }

}  // namespace vfio_emu::core
