// /dev/iommu: an iommufd context with its objects (IOAS, HWPT, bound devices), the iommufd
// ioctls, and the VFIO container compatibility ioctls on the same fd.
//
// This header is the iommufd module's face towards the rest of the core: the group node
// (SET_CONTAINER with an iommufd fd) and the device cdev (BIND, ATTACH, DETACH) call into it.
#pragma once

#include <memory>

#include "core/objects.h"

namespace vfio_emu::core {

class IommufdCtx;

class IommufdFile final : public File {
 public:
  IommufdFile(u64 id, pid_t opener, std::shared_ptr<IommufdCtx> c)
      : File(NodeKind::kIommufd, id, opener), ctx(std::move(c)) {}
  std::shared_ptr<IommufdCtx> ctx;
};

std::shared_ptr<IommufdCtx> make_iommufd_ctx(Emulator& emu, u64 id);

// The last close of an iommufd file (Emulator::mu held). Objects still referenced by bound
// devices or groups live on with the context until those go.
void release_iommufd_file(Emulator& emu, IommufdFile& f);

// VFIO_GROUP_SET_CONTAINER with an iommufd fd: creates the compat IOAS if there is none
// (Emulator::mu held). Errors: ENOMEM.
Status iommufd_attach_group(Emulator& emu, const std::shared_ptr<IommufdCtx>& ctx, Group& g);
// VFIO_GROUP_UNSET_CONTAINER / group close for a group set to an iommufd.
void iommufd_detach_group(Emulator& emu, IommufdCtx& ctx, Group& g);

// The cdev side (Emulator::mu held). BIND creates a device object and returns its id.
// Errors: ENOMEM.
Result<u32> iommufd_bind_device(Emulator& emu, IommufdCtx& ctx, Device& dev);
void iommufd_unbind_device(Emulator& emu, IommufdCtx& ctx, u32 devid);
// Attaches the device to an IOAS (a HWPT is found or created) or to a HWPT; a second attach
// replaces the first. Returns the HWPT id. Errors: ENOENT (no such IOAS/HWPT), EINVAL
// (incompatible), EADDRINUSE (reserved regions clash with allowed/mapped IOVA), ENOSPC, ENOMEM.
Result<u32> iommufd_attach_device(Emulator& emu, IommufdCtx& ctx, u32 devid, u32 pt_id,
                                  IoctlCall& call);
void iommufd_detach_device(Emulator& emu, IommufdCtx& ctx, u32 devid);

}  // namespace vfio_emu::core
