// Groups joining and leaving containers (Emulator::mu held).
#pragma once

#include <memory>

#include "core/objects.h"

namespace vfio_emu::core {

// vfio_container_attach_group. Errors: EPERM (the container holds an incompatible IOMMU, or a
// device of the group is bound to an iommufd), or the driver's attach error.
Status container_attach_group(Emulator& emu, const std::shared_ptr<Container>& c, Group& g,
                              IoctlCall& call);
// vfio_group_detach_container: the last group releases the driver and all mappings.
void container_detach_group(Emulator& emu, Group& g);

// The group file's release (vfio_group_fops_release): the group leaves its container or its
// iommufd and can be opened again (Emulator::mu held).
void release_group(Emulator& emu, Group& g);

}  // namespace vfio_emu::core
