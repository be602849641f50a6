// Groups joining and leaving containers (Emulator::mu held).
#pragma once

#include <memory>

#include "core/command.h"
#include "core/objects.h"

namespace vfio_emu::core {

// vfio_container_attach_group. Errors: EPERM (the container holds an incompatible IOMMU, or a
// device of the group is bound to an iommufd), or the driver's attach error.
Status container_attach_group(Emulator& emu, const std::shared_ptr<Container>& c, Group& g,
                              IoctlCall& call);
// vfio_group_detach_container: the last group releases the driver and all mappings.
void container_detach_group(Emulator& emu, Group& g);

// The ioctls of /dev/vfio/vfio itself (its IOMMU driver's are the driver's methods).
namespace container_ioctl {
IoctlHandler get_api_version, check_extension, set_iommu;
}

}  // namespace vfio_emu::core
