// The vIOMMU family (drivers/iommu/iommufd/viommu.c, eventq.c): IOMMU_VIOMMU_ALLOC,
// IOMMU_VDEVICE_ALLOC, IOMMU_VEVENTQ_ALLOC, IOMMU_HW_QUEUE_ALLOC. No simulated unit offers a
// vIOMMU (VT-d has no viommu ops), so no vIOMMU object can exist; each command fails where Linux
// would fail for such hardware, after the same argument checks.
#include "core/iommufd/ctx.h"
#include "core/iommufd/ioctls.h"
#include "core/reject.h"
#include "core/uapi/iommufd.h"

namespace vfio_emu::core {

using namespace uapi;

namespace viommu_ioctl {

Result<long> viommu_alloc(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_viommu_alloc>();
  call.detail = fmt::format("flags={:#x} type={:#x} dev={:#x} hwpt={:#x}", cmd.flags, cmd.type,
                            cmd.dev_id, cmd.hwpt_id);
  if (cmd.flags || cmd.type == IOMMU_VIOMMU_TYPE_DEFAULT)
    return reject(call, EOPNOTSUPP, "flags {:#x} type {:#x}", cmd.flags, cmd.type);
  IommufdCtx& ctx = ctx_of(file);
  std::lock_guard lock(ctx.mu);
  auto d = ctx.get<IommufdDevice>(cmd.dev_id, ObjType::kDevice);
  if (!d) return reject(call, ENOENT, "no device {:#x}", cmd.dev_id);
  if (d->dev->group().noiommu())
    return reject(call, EOPNOTSUPP, "no-IOMMU device {} has no vIOMMU", d->dev->spec().bdf);
  return reject(call, EOPNOTSUPP, "unit {} offers no vIOMMU", d->dev->group().unit()->name());
}

Result<long> no_viommu(IoctlCall& call, u32 viommu_id) {
  return reject(call, ENOENT, "no vIOMMU {:#x}", viommu_id);
}

Result<long> vdevice_alloc(Emulator&, File&, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_vdevice_alloc>();
  call.detail = fmt::format("viommu={:#x} dev={:#x} virt_id={:#x}", cmd.viommu_id, cmd.dev_id,
                            cmd.virt_id);
  return no_viommu(call, cmd.viommu_id);
}

Result<long> veventq_alloc(Emulator&, File&, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_veventq_alloc>();
  call.detail = fmt::format("flags={:#x} viommu={:#x} type={:#x} depth={:#x}", cmd.flags,
                            cmd.viommu_id, cmd.type, cmd.veventq_depth);
  if (cmd.flags || cmd.__reserved || cmd.type == IOMMU_VEVENTQ_TYPE_DEFAULT)
    return reject(call, EOPNOTSUPP, "flags {:#x} __reserved {:#x} type {:#x}", cmd.flags,
                  cmd.__reserved, cmd.type);
  if (!cmd.veventq_depth) return reject(call, EINVAL, "veventq_depth is zero");
  return no_viommu(call, cmd.viommu_id);
}

Result<long> hw_queue_alloc(Emulator&, File&, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_hw_queue_alloc>();
  call.detail = fmt::format("flags={:#x} viommu={:#x} type={:#x} iova={:#x} length={:#x}",
                            cmd.flags, cmd.viommu_id, cmd.type, cmd.nesting_parent_iova,
                            cmd.length);
  if (cmd.flags || cmd.type == IOMMU_HW_QUEUE_TYPE_DEFAULT)
    return reject(call, EOPNOTSUPP, "flags {:#x} type {:#x}", cmd.flags, cmd.type);
  if (!cmd.length) return reject(call, EINVAL, "length is zero");
  u64 last;
  if (__builtin_add_overflow(cmd.nesting_parent_iova, cmd.length - 1, &last))
    return reject(call, EOVERFLOW, "iova {:#x} + length {:#x} wraps", cmd.nesting_parent_iova,
                  cmd.length);
  return no_viommu(call, cmd.viommu_id);
}

}  // namespace viommu_ioctl

}  // namespace vfio_emu::core
