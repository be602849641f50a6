// /dev/iommu: an iommufd context with its objects (IOAS, HWPT, bound devices), the iommufd
// ioctls, and the VFIO container compatibility ioctls on the same fd (Linux 6.18,
// drivers/iommu/iommufd/). The order of checks and the errno of each follow
// shared/spec/linux-vfio-uapi.md §5 and, where it is silent, upstream.
//
// This header is the iommufd module's face towards the rest of the core: the group node
// (SET_CONTAINER with an iommufd fd) and the device cdev (BIND, ATTACH, DETACH) call into it.
//
// What a group joined through VFIO_GROUP_SET_CONTAINER(iommufd) means here: exactly what it
// means in Linux before VFIO_GROUP_GET_DEVICE_FD, which is where Linux binds the group's devices
// to the iommufd and attaches them to the compat IOAS. A user-space emulator cannot hand out a
// device fd, so a group in an iommufd only provides the compat IOAS: MAP_DMA records areas
// lazily (nothing pinned, user_va not checked) and no IOMMU domain exists for the group. DMA
// starts when a device is attached to an IOAS through its cdev; attaching it to the compat IOAS
// (IOMMU_VFIO_IOAS GET gives its id) replays the compat mappings into the new domain, as Linux
// does at GET_DEVICE_FD.
//
// Locked memory: the emulator cannot see the kernel's user_struct, so the per-user count of
// IOMMU_OPTION_RLIMIT_MODE = 0 (the default) is kept by the emulator itself, in
// Emulator::locked_memory() under the key iommufd_user_lock_key(uid): every iommufd context of
// that uid charges the same count (as Linux's user->locked_vm), and nothing else does (Linux's
// io_uring and others would share it too). Per-process mode (1) charges the pid, the key type1
// uses for mm->locked_vm, so both share one budget as in Linux. A caller with CAP_IPC_LOCK at
// MAP time is not charged at all (IOPT_PAGES_ACCOUNT_NONE).
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>

#include "core/objects.h"

namespace vfio_emu::core {

class IommufdCtx;

class IommufdFile final : public File {
 public:
  IommufdFile(u64 id, pid_t opener, std::shared_ptr<IommufdCtx> c)
      : File(NodeKind::kIommufd, id, opener), ctx(std::move(c)) {}
  // Reset by the last close; groups and bound devices keep the context alive after it.
  std::shared_ptr<IommufdCtx> ctx;
};

std::shared_ptr<IommufdCtx> make_iommufd_ctx(Emulator& emu, u64 id);

// The last close of an iommufd file (Emulator::mu held). Objects still referenced by bound
// devices or groups live on with the context until those go.
void release_iommufd_file(Emulator& emu, IommufdFile& f);

// The LockedMemory key of the per-user count of `uid` (negative, so it never meets a pid).
pid_t iommufd_user_lock_key(uid_t uid);

// VFIO_GROUP_SET_CONTAINER with an iommufd fd: creates the compat IOAS if there is none
// (Emulator::mu held). Errors: EINVAL (no-IOMMU mode), ENOMEM (Limits::iommufd_objects).
Status iommufd_attach_group(Emulator& emu, const std::shared_ptr<IommufdCtx>& ctx, Group& g,
                            IoctlCall& call);
// VFIO_GROUP_UNSET_CONTAINER / group close for a group set to an iommufd. The compat IOAS stays.
void iommufd_detach_group(Emulator& emu, IommufdCtx& ctx, Group& g);

// The cdev side (Emulator::mu held). BIND creates a device object and returns its id (>= 1).
// Errors: ENOMEM (Limits::iommufd_objects).
Result<u32> iommufd_bind_device(Emulator& emu, IommufdCtx& ctx, Device& dev, IoctlCall& call);
// A device bound to `ctx` as `devid` accesses `iova`: its attached HWPT's translation. On return
// (also with an error) *hold holds the HWPT's Ioas::mu, so that an unmap of the IOVA waits for
// the access to end. Errors: ENXIO (not attached to a HWPT: no DMA at all).
Result<DmaTranslation> iommufd_dma_translate(IommufdCtx& ctx, u32 devid, u64 iova,
                                             iommu::Access access,
                                             std::unique_lock<std::mutex>* hold);
// Detaches the device if it is attached and destroys its object.
void iommufd_unbind_device(Emulator& emu, IommufdCtx& ctx, u32 devid);
// Attaches the device to an IOAS (a HWPT is found or created) or to a HWPT; a second attach
// replaces the first. Returns the HWPT id.
// Errors: EINVAL (pt_id is neither an IOAS nor a HWPT; the HWPT is on another IOMMU unit;
//   another device of the group uses another HWPT; the device has no IOMMU (nop unit)),
//   ENOENT (no such object), EOPNOTSUPP (the unit cannot allocate a paging domain: TCE),
//   EADDRINUSE (reserved regions or the aperture meet mapped or allowed IOVA, or existing
//   mappings are misaligned for the domain), EFAULT/ENOMEM (pinning the IOAS's mappings),
//   ENOSPC (the unit is out of domain ids). All-or-nothing.
Result<u32> iommufd_attach_device(Emulator& emu, IommufdCtx& ctx, u32 devid, u32 pt_id,
                                  IoctlCall& call);
// Detaches the device if attached (its auto-created HWPT goes with its last device).
void iommufd_detach_device(Emulator& emu, IommufdCtx& ctx, u32 devid);
// A device opened through a group set to this iommufd: attached to the compat IOAS, as Linux's
// vfio_iommufd_compat_attach_ioas does for VFIO_GROUP_GET_DEVICE_FD. Returns the HWPT id.
// Errors: ENODEV (no compat IOAS), those of iommufd_attach_device.
Result<u32> iommufd_attach_compat(Emulator& emu, IommufdCtx& ctx, u32 devid, IoctlCall& call);
// Whether object `id` exists in the context (iommufd_get_object(IOMMUFD_OBJ_ANY)).
bool iommufd_object_exists(IommufdCtx& ctx, u32 id);
// vfio_iommufd_device_has_compat_ioas: whether the context has a compat IOAS.
bool iommufd_has_compat_ioas(IommufdCtx& ctx);

}  // namespace vfio_emu::core
