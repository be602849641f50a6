// /dev/vfio/<group>: the group node's ioctls and its release.
#pragma once

#include "core/command.h"
#include "core/objects.h"

namespace vfio_emu::core {

// The group file's release (vfio_group_fops_release): the group leaves its container or its
// iommufd and can be opened again (Emulator::mu held).
void release_group(Emulator& emu, Group& g);

namespace group_ioctl {
IoctlHandler get_status, set_container, unset_container, get_device_fd, group_device;
}

}  // namespace vfio_emu::core
