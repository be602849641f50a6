// Hardware page tables (drivers/iommu/iommufd/hw_pagetable.c): IOMMU_HWPT_ALLOC and the HWPT
// ioctls this emulator only refuses (dirty tracking, cache invalidation, fault queues).
//
// A HWPT is one IOMMU domain on the unit of the device it was made for, registered with the
// emulator (Emulator::create_domain) and kept filled with its IOAS's areas. Only plain paging
// HWPTs exist: the simulated units offer no nesting and no dirty tracking.
#include "core/cleanup.h"
#include "core/emulator.h"
#include "core/iommufd/ctx.h"
#include "core/iommufd/ioctls.h"
#include "core/iommufd/user_copy.h"
#include "core/reject.h"
#include "core/uapi/iommufd.h"

namespace vfio_emu::core {

using namespace uapi;

Result<std::shared_ptr<Hwpt>> hwpt_paging_alloc(IommufdCtx& ctx, const std::shared_ptr<Ioas>& ioas,
                                                IommufdDevice& dev, bool immediate_attach,
                                                IoctlCall& call) {
  if (dev.dev->group().noiommu())
    return reject(call, EOPNOTSUPP, "no-IOMMU device {}: its software page table "
                  "(IOMMU_IOAS_NOIOMMU_GET_PA) is not emulated", dev.dev->spec().bdf);
  const std::shared_ptr<iommu::Unit>& unit = dev.dev->group().unit();
  // iommu_paging_domain_alloc(): sPAPR's iommu_ops allocate no paging domains, and a device
  // without an IOMMU has no ops at all.
  if (unit->model() == iommu::Model::kTce)
    return reject(call, EOPNOTSUPP, "device {}: TCE unit {} allocates no paging domains",
                  dev.dev->spec().bdf, unit->name());
  if (unit->model() == iommu::Model::kNop)
    return reject(call, ENODEV, "device {} has no IOMMU (unit {} does no DMA)",
                  dev.dev->spec().bdf, unit->name());
  auto hwpt = std::make_shared<Hwpt>();
  hwpt->ioas = ioas;
  const u32 id = TRY(ctx.insert(hwpt, call));
  Cleanup erase([&] { ctx.erase(id); });
  auto created = ctx.emu.create_domain(unit, std::shared_ptr<std::mutex>(ioas, &ioas->mu),
                                       fmt::format("iommufd {} hwpt {}", ctx.id, id));
  if (!created) {
    if (created.error() == ENOSPC)
      return reject(call, ENOSPC, "IOMMU unit {} has run out of domain ids (CAP.ND)",
                    unit->name());
    return reject(call, created.error(), "allocating a domain on unit {}", unit->name());
  }
  hwpt->domain = created.take();
  hwpt->enforce_cache_coherency = unit->enforces_cache_coherency();
  if (immediate_attach) TRY(hwpt_attach(ctx, hwpt, dev, call));
  Cleanup detach([&] {
    if (immediate_attach) hwpt_detach(ctx, dev);
  });
  {
    std::lock_guard lock(ioas->mu);
    ioas->hwpts.reserve(ioas->hwpts.size() + 1);  // nothing can fail after add_domain
    std::string why;
    Status st = ioas->iopt.add_domain(pinner_of(call), *hwpt->domain->hw, hwpt.get(), &why);
    if (!st) return reject_message(call, st.error(), why);
    ioas->hwpts.push_back(hwpt.get());
  }
  detach.cancel();
  erase.cancel();
  ++ioas->users;
  return hwpt;
}

void hwpt_destroy(IommufdCtx& ctx, const std::shared_ptr<Hwpt>& hwpt) {
  Ioas& ioas = *hwpt->ioas;
  {
    std::lock_guard lock(ioas.mu);
    ioas.iopt.remove_domain(*hwpt->domain->hw, hwpt.get());
    std::erase(ioas.hwpts, hwpt.get());
  }
  --ioas.users;
  ctx.erase(hwpt->id);
}

namespace hwpt_ioctl {

constexpr u32 kValidAllocFlags = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING |
                                 IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID;

Result<long> hwpt_alloc(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_hwpt_alloc>();
  call.detail = fmt::format("flags={:#x} dev={:#x} pt={:#x} data_type={:#x} data_len={:#x}",
                            cmd.flags, cmd.dev_id, cmd.pt_id, cmd.data_type, cmd.data_len);
  if (cmd.__reserved) return reject(call, EOPNOTSUPP, "__reserved {:#x}", cmd.__reserved);
  if ((cmd.data_type == IOMMU_HWPT_DATA_NONE && cmd.data_len) ||
      (cmd.data_type != IOMMU_HWPT_DATA_NONE && !cmd.data_len))
    return reject(call, EINVAL, "data_type {:#x} with data_len {:#x}", cmd.data_type,
                  cmd.data_len);
  IommufdCtx& ctx = ctx_of(file);
  std::lock_guard lock(ctx.mu);
  auto dev = ctx.get<IommufdDevice>(cmd.dev_id, ObjType::kDevice);
  if (!dev) return reject(call, ENOENT, "no device {:#x}", cmd.dev_id);
  auto pt = ctx.objects.find(cmd.pt_id);
  if (pt == ctx.objects.end()) return reject(call, EINVAL, "no object {:#x}", cmd.pt_id);
  if (dev->dev->group().noiommu())
    return reject(call, EOPNOTSUPP, "no-IOMMU device {}: its software page table "
                  "(IOMMU_IOAS_NOIOMMU_GET_PA) is not emulated", dev->dev->spec().bdf);
  const std::shared_ptr<iommu::Unit>& unit = dev->dev->group().unit();
  // Only VT-d implements domain_alloc_paging_flags() / domain_alloc_nested().
  const bool vtd = unit->model() == iommu::Model::kVtd;
  std::shared_ptr<Hwpt> hwpt;
  switch (pt->second->type) {
    case ObjType::kIoas: {
      if ((cmd.flags || cmd.data_len) && !vtd)
        return reject(call, EOPNOTSUPP, "flags {:#x} data_len {:#x}: unit {} takes no allocation "
                      "flags", cmd.flags, cmd.data_len, unit->name());
      if (cmd.flags & ~kValidAllocFlags) return reject(call, EOPNOTSUPP, "flags {:#x}", cmd.flags);
      if (cmd.flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
        return reject(call, EOPNOTSUPP, "unit {} does no dirty tracking", unit->name());
      if (cmd.flags & IOMMU_HWPT_ALLOC_NEST_PARENT)
        return reject(call, EOPNOTSUPP, "unit {} does no nested translation", unit->name());
      if (cmd.data_len)
        return reject(call, EOPNOTSUPP, "data_type {:#x}: a paging domain takes no driver data",
                      cmd.data_type);
      auto ioas = std::static_pointer_cast<Ioas>(pt->second);
      hwpt = TRY(hwpt_paging_alloc(ctx, ioas, *dev, false, call));
      hwpt->pasid_compat = cmd.flags & IOMMU_HWPT_ALLOC_PASID;
      break;
    }
    case ObjType::kHwptPaging:
      // iommufd_hwpt_nested_alloc: a nested HWPT needs driver data and a nesting parent.
      if ((cmd.flags & ~IOMMU_HWPT_FAULT_ID_VALID) || !cmd.data_len || !vtd)
        return reject(call, EOPNOTSUPP, "flags {:#x} data_len {:#x}: not a nested allocation",
                      cmd.flags, cmd.data_len);
      return reject(call, EINVAL, "HWPT {:#x} is not a nesting parent", cmd.pt_id);
    default:
      return reject(call, EINVAL, "object {:#x} is a {}, not an IOAS or a HWPT", cmd.pt_id,
                    obj_type_name(pt->second->type));
  }
  if (cmd.flags & IOMMU_HWPT_FAULT_ID_VALID) {
    hwpt_destroy(ctx, hwpt);  // no fault object can exist: IOMMU_FAULT_QUEUE_ALLOC is refused
    return reject(call, ENOENT, "no fault object {:#x}", cmd.fault_id);
  }
  cmd.out_hwpt_id = hwpt->id;
  Status st = respond(call, sizeof(cmd));
  if (!st) {
    hwpt_destroy(ctx, hwpt);
    return Err{st.error()};
  }
  call.detail += fmt::format(" -> hwpt={:#x}", hwpt->id);
  return 0;
}

Result<long> hwpt_set_dirty_tracking(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_hwpt_set_dirty_tracking>();
  call.detail = fmt::format("hwpt={:#x} flags={:#x}", cmd.hwpt_id, cmd.flags);
  if (cmd.flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE)
    return reject(call, EOPNOTSUPP, "flags {:#x}", cmd.flags);
  IommufdCtx& ctx = ctx_of(file);
  std::lock_guard lock(ctx.mu);
  if (!ctx.get<Hwpt>(cmd.hwpt_id, ObjType::kHwptPaging))
    return reject(call, ENOENT, "no HWPT {:#x}", cmd.hwpt_id);
  return reject(call, EOPNOTSUPP, "HWPT {:#x} was not allocated with dirty tracking",
                cmd.hwpt_id);
}

Result<long> hwpt_get_dirty_bitmap(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_hwpt_get_dirty_bitmap>();
  call.detail = fmt::format("hwpt={:#x} flags={:#x} iova={:#x} length={:#x} page_size={:#x}",
                            cmd.hwpt_id, cmd.flags, cmd.iova, cmd.length, cmd.page_size);
  if ((cmd.flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) || cmd.__reserved)
    return reject(call, EOPNOTSUPP, "flags {:#x} __reserved {:#x}", cmd.flags, cmd.__reserved);
  IommufdCtx& ctx = ctx_of(file);
  std::shared_ptr<Hwpt> hwpt;
  {
    std::lock_guard lock(ctx.mu);
    hwpt = ctx.get<Hwpt>(cmd.hwpt_id, ObjType::kHwptPaging);
  }
  if (!hwpt) return reject(call, ENOENT, "no HWPT {:#x}", cmd.hwpt_id);
  // iommufd_check_iova_range.
  u64 alignment;
  {
    std::lock_guard lock(hwpt->ioas->mu);
    alignment = hwpt->ioas->iopt.iova_alignment();
  }
  u64 last;
  if (__builtin_add_overflow(cmd.iova, cmd.length - 1, &last))
    return reject(call, EOVERFLOW, "iova {:#x} + length {:#x} wraps", cmd.iova, cmd.length);
  if ((cmd.iova & (alignment - 1)) || ((last + 1) & (alignment - 1)))
    return reject(call, EINVAL, "iova {:#x} length {:#x} not aligned to {:#x}", cmd.iova,
                  cmd.length, alignment);
  if (!cmd.page_size) return reject(call, EINVAL, "page_size is zero");
  if ((cmd.iova & (cmd.page_size - 1)) || ((last + 1) & (cmd.page_size - 1)))
    return reject(call, EINVAL, "iova {:#x} length {:#x} not aligned to page_size {:#x}",
                  cmd.iova, cmd.length, cmd.page_size);
  return reject(call, EOPNOTSUPP, "HWPT {:#x} has no dirty tracking", cmd.hwpt_id);
}

Result<long> hwpt_invalidate(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_hwpt_invalidate>();
  call.detail = fmt::format("hwpt={:#x} data_type={:#x} entry_len={:#x} entry_num={:#x}",
                            cmd.hwpt_id, cmd.data_type, cmd.entry_len, cmd.entry_num);
  // The struct goes back with entry_num = requests handled (none) whatever happens.
  auto fail = [&](Err e) -> Result<long> {
    cmd.entry_num = 0;
    TRY(respond(call, sizeof(cmd)));
    return e;
  };
  if (cmd.__reserved) return fail(reject(call, EOPNOTSUPP, "__reserved {:#x}", cmd.__reserved));
  if (cmd.entry_num && (!cmd.data_uptr || !cmd.entry_len))
    return fail(reject(call, EINVAL, "entry_num {:#x} without data_uptr or entry_len",
                       cmd.entry_num));
  IommufdCtx& ctx = ctx_of(file);
  std::lock_guard lock(ctx.mu);
  auto pt = ctx.objects.find(cmd.hwpt_id);
  if (pt == ctx.objects.end()) return fail(reject(call, ENOENT, "no object {:#x}", cmd.hwpt_id));
  return fail(reject(call, EINVAL, "object {:#x} is a {}, not a nested HWPT or a vIOMMU",
                     cmd.hwpt_id, obj_type_name(pt->second->type)));
}

Result<long> fault_queue_alloc(Emulator&, File&, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_fault_alloc>();
  call.detail = fmt::format("flags={:#x}", cmd.flags);
  if (cmd.flags) return reject(call, EOPNOTSUPP, "flags {:#x}", cmd.flags);
  return reject(call, EOPNOTSUPP, "a fault queue is an fd, and a user-space emulator cannot "
                "create an fd in the caller");
}

}  // namespace hwpt_ioctl

}  // namespace vfio_emu::core
