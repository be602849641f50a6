// Devices bound to an iommufd (drivers/iommu/iommufd/device.c): bind, attach to an IOAS or a
// HWPT (automatic domains), replace, detach, unbind, and IOMMU_GET_HW_INFO.
//
// Devices of one IOMMU group share a HWPT within a context, as Linux's iommufd_group does: the
// first device attaches the group, the others must attach to the same HWPT, and a replace moves
// them all.
#include "core/cleanup.h"
#include "core/emulator.h"
#include "core/iommufd/ctx.h"
#include "core/iommufd/ioctls.h"
#include "core/iommufd/user_copy.h"
#include "core/log.h"
#include "core/reject.h"
#include "core/uapi/iommufd.h"
#include "iommu/vtd/vtd.h"

namespace vfio_emu::core {

using namespace uapi;

namespace {

const std::shared_ptr<iommu::Unit>& unit_of(const IommufdDevice& d) {
  return d.dev->group().unit();
}

// The attached devices of `d`'s IOMMU group in this context (igroup->device_list).
std::vector<IommufdDevice*> attached_group_members(IommufdCtx& ctx, const IommufdDevice& d) {
  std::vector<IommufdDevice*> out;
  for (const auto& [id, obj] : ctx.objects) {
    if (obj->type != ObjType::kDevice) continue;
    auto& other = static_cast<IommufdDevice&>(*obj);
    if (&other.dev->group() == &d.dev->group() && other.hwpt) out.push_back(&other);
  }
  return out;
}

// iopt_table_enforce_dev_resv_regions: the unit's reserved regions become reserved IOVA of the
// IOAS, owned by the device. Errors: EADDRINUSE. All-or-nothing.
Status reserve_regions(IoctlCall& call, Ioas& ioas, IommufdDevice& d) {
  std::lock_guard lock(ioas.mu);
  Cleanup unreserve([&] { ioas.iopt.remove_reserved(&d); });
  std::string why;
  for (const iommu::IovaRange& r : unit_of(d)->reserved_regions()) {
    Status st = ioas.iopt.reserve(r, &d, "reserved region of device " + d.dev->spec().bdf, &why);
    if (!st) return reject_message(call, st.error(), why);
  }
  unreserve.cancel();
  return {};
}

void unreserve_regions(Ioas& ioas, const IommufdDevice& d) {
  std::lock_guard lock(ioas.mu);
  ioas.iopt.remove_reserved(&d);
}

Status check_unit(IoctlCall& call, const Hwpt& hwpt, const IommufdDevice& d) {
  if (hwpt.domain->unit != unit_of(d))
    return reject(call, EINVAL, "HWPT {:#x} is a domain of unit {}; device {} is behind {}",
                  hwpt.id, hwpt.domain->unit->name(), d.dev->spec().bdf, unit_of(d)->name());
  return {};
}

// Another device of the group attached elsewhere than `target` (nullptr: a HWPT not made yet).
Status check_group(IommufdCtx& ctx, IoctlCall& call, const Hwpt* target, const IommufdDevice& d) {
  for (const IommufdDevice* m : attached_group_members(ctx, d))
    if (m != &d && m->hwpt.get() != target)
      return reject(call, EINVAL, "device {} of the same group is attached to HWPT {:#x}",
                    m->dev->spec().bdf, m->hwpt->id);
  return {};
}

// iommufd_device_do_replace: moves the device's whole group to `hwpt`.
Status do_replace(IommufdCtx& ctx, const std::shared_ptr<Hwpt>& hwpt, IommufdDevice& d,
                  IoctlCall& call) {
  const std::shared_ptr<Hwpt> old = d.hwpt;
  if (old == hwpt) return {};
  const std::vector<IommufdDevice*> members = attached_group_members(ctx, d);
  const bool new_ioas = hwpt->ioas != old->ioas;
  size_t reserved = 0;
  Cleanup unreserve([&] {
    for (size_t j = 0; j < reserved; ++j) unreserve_regions(*hwpt->ioas, *members[j]);
  });
  if (new_ioas) {
    for (IommufdDevice* m : members) {
      TRY(reserve_regions(call, *hwpt->ioas, *m));
      ++reserved;
    }
  }
  TRY(check_unit(call, *hwpt, d));  // iommu_group_replace_domain()
  unreserve.cancel();
  for (IommufdDevice* m : members) {
    if (new_ioas) unreserve_regions(*old->ioas, *m);
    m->hwpt = hwpt;
    ++hwpt->users;
    --old->users;
  }
  if (old->auto_domain && old->users == 0) hwpt_destroy(ctx, old);
  return {};
}

// iommufd_device_auto_get_domain: an automatic HWPT of the IOAS on the device's unit, or a new
// one. Returns it.
Result<std::shared_ptr<Hwpt>> auto_get_domain(IommufdCtx& ctx, const std::shared_ptr<Ioas>& ioas,
                                              IommufdDevice& d, bool replace, IoctlCall& call) {
  std::vector<Hwpt*> candidates;
  {
    std::lock_guard lock(ioas->mu);
    candidates = ioas->hwpts;
  }
  for (Hwpt* h : candidates) {
    // A domain of another unit refuses the device (EINVAL): Linux tries the next one.
    if (!h->auto_domain || h->domain->unit != unit_of(d)) continue;
    auto hwpt = ctx.get<Hwpt>(h->id, ObjType::kHwptPaging);
    if (replace) {
      TRY(do_replace(ctx, hwpt, d, call));
    } else {
      TRY(hwpt_attach(ctx, hwpt, d, call));
    }
    return hwpt;
  }
  if (!replace) TRY(check_group(ctx, call, nullptr, d));
  auto hwpt = TRY(hwpt_paging_alloc(ctx, ioas, d, !replace, call));
  if (replace) {
    Cleanup destroy([&] { hwpt_destroy(ctx, hwpt); });
    TRY(do_replace(ctx, hwpt, d, call));
    destroy.cancel();
  }
  hwpt->auto_domain = true;
  return hwpt;
}

}  // namespace

Status hwpt_attach(IommufdCtx& ctx, const std::shared_ptr<Hwpt>& hwpt, IommufdDevice& d,
                   IoctlCall& call) {
  TRY(check_group(ctx, call, hwpt.get(), d));
  TRY(reserve_regions(call, *hwpt->ioas, d));
  Cleanup unreserve([&] { unreserve_regions(*hwpt->ioas, d); });
  TRY(check_unit(call, *hwpt, d));  // iommu_attach_group()
  unreserve.cancel();
  d.hwpt = hwpt;
  ++hwpt->users;
  return {};
}

void hwpt_detach(IommufdCtx& ctx, IommufdDevice& d) {
  const std::shared_ptr<Hwpt> hwpt = std::move(d.hwpt);
  if (!hwpt) return;
  unreserve_regions(*hwpt->ioas, d);
  --hwpt->users;
  if (hwpt->auto_domain && hwpt->users == 0) hwpt_destroy(ctx, hwpt);
}

Result<u32> iommufd_bind_device(Emulator& emu, IommufdCtx& ctx, Device& dev, IoctlCall& call) {
  // iommufd_bind_iommu: MSIs a device could forge must be isolated, unless the administrator
  // allows unsafe interrupts (then Linux warns once per device).
  // A no-IOMMU device (iommufd_bind_noiommu) has no group to own and no MSI to isolate.
  if (!dev.group().noiommu() && !dev.group().unit()->isolated_msi()) {
    if (!emu.limits().allow_unsafe_interrupts)
      return reject(call, EPERM, "device {}: MSI interrupts cannot be isolated on unit {} (no "
                    "interrupt remapping; allow_unsafe_interrupts is off)", dev.spec().bdf,
                    dev.group().unit()->name());
    logger("core.iommufd")->warn("device {}: MSI interrupts are not secure on unit {}: bound "
                                 "because allow_unsafe_interrupts is set", dev.spec().bdf,
                                 dev.group().unit()->name());
  }
  std::lock_guard lock(ctx.mu);
  auto obj = std::make_shared<IommufdDevice>(&dev);
  obj->users = 1;  // VFIO's reference until unbind: DESTROY says EBUSY
  return ctx.insert(std::move(obj), call);
}

void iommufd_unbind_device(Emulator&, IommufdCtx& ctx, u32 devid) {
  std::lock_guard lock(ctx.mu);
  auto d = ctx.get<IommufdDevice>(devid, ObjType::kDevice);
  if (!d) return;
  hwpt_detach(ctx, *d);
  ctx.erase(devid);
}

Result<u32> iommufd_attach_device(Emulator&, IommufdCtx& ctx, u32 devid, u32 pt_id,
                                  IoctlCall& call) {
  std::lock_guard lock(ctx.mu);
  auto d = ctx.get<IommufdDevice>(devid, ObjType::kDevice);
  if (!d) return reject(call, EINVAL, "device object {:#x} is gone", devid);
  if (d->dev->group().noiommu())
    return reject(call, EOPNOTSUPP, "no-IOMMU device {}: its software page table "
                  "(IOMMU_IOAS_NOIOMMU_GET_PA) is not emulated", d->dev->spec().bdf);
  // A device with no IOMMU is what VFIO's no-IOMMU mode exposes; it has no iommufd device to
  // attach (vfio_iommufd_physical_attach_ioas: EINVAL).
  if (unit_of(*d)->model() == iommu::Model::kNop)
    return reject(call, EINVAL, "device {} has no IOMMU (unit {} does no DMA)",
                  d->dev->spec().bdf, unit_of(*d)->name());
  auto pt = ctx.objects.find(pt_id);
  if (pt == ctx.objects.end()) return reject(call, ENOENT, "no object {:#x}", pt_id);
  const bool replace = d->hwpt != nullptr;
  std::shared_ptr<Hwpt> hwpt;
  switch (pt->second->type) {
    case ObjType::kHwptPaging:
      hwpt = std::static_pointer_cast<Hwpt>(pt->second);
      if (replace) {
        TRY(do_replace(ctx, hwpt, *d, call));
      } else {
        TRY(hwpt_attach(ctx, hwpt, *d, call));
      }
      break;
    case ObjType::kIoas:
      hwpt = TRY(auto_get_domain(ctx, std::static_pointer_cast<Ioas>(pt->second), *d, replace,
                                 call));
      break;
    default:
      return reject(call, EINVAL, "object {:#x} is a {}, not an IOAS or a HWPT", pt_id,
                    obj_type_name(pt->second->type));
  }
  return hwpt->id;
}

Result<u32> iommufd_attach_compat(Emulator& emu, IommufdCtx& ctx, u32 devid, IoctlCall& call) {
  u32 ioas = 0;
  {
    std::lock_guard lock(ctx.mu);
    if (!ctx.vfio_ioas) return reject(call, ENODEV, "iommufd {} has no compat IOAS", ctx.id);
    ioas = ctx.vfio_ioas->id;
  }
  return iommufd_attach_device(emu, ctx, devid, ioas, call);
}

void iommufd_detach_device(Emulator&, IommufdCtx& ctx, u32 devid) {
  std::lock_guard lock(ctx.mu);
  if (auto d = ctx.get<IommufdDevice>(devid, ObjType::kDevice)) hwpt_detach(ctx, *d);
}

namespace {
// One IOVA through `hwpt`'s domain, its IOAS's lock held.
Result<DmaTranslation> translate_in_hwpt(const std::shared_ptr<Hwpt>& hwpt, u64 iova,
                                         iommu::Access access) {
  DmaTranslation t;
  t.domain = hwpt->domain;
  t.walk = hwpt->domain->hw->translate(iova, access);
  if (!t.walk.ok()) return t;
  const iopt::Area* area = hwpt->ioas->iopt.area_overlapping(iova, iova);
  if (area == nullptr) return Err{EFAULT};  // an entry no area explains: not reached
  t.owner = area->pages->source_pid;
  t.address = area->user_va() + (iova - area->iova);
  t.more = [hwpt, access](u64 next) { return translate_in_hwpt(hwpt, next, access); };
  return t;
}
}  // namespace

Result<DmaTranslation> iommufd_dma_translate(IommufdCtx& ctx, u32 devid, u64 iova,
                                             iommu::Access access,
                                             std::unique_lock<std::mutex>* hold) {
  std::shared_ptr<Hwpt> hwpt;
  {
    std::lock_guard lock(ctx.mu);
    if (auto idev = ctx.get<IommufdDevice>(devid, ObjType::kDevice)) hwpt = idev->hwpt;
  }
  if (!hwpt || !hwpt->domain || !hwpt->ioas) return Err{ENXIO};
  *hold = std::unique_lock(hwpt->ioas->mu);
  return translate_in_hwpt(hwpt, iova, access);
}

namespace idev_ioctl {

// ---- IOMMU_GET_HW_INFO -------------------------------------------------------------------------

Result<long> get_hw_info(Emulator&, File& file, IoctlCall& call) {
  auto& cmd = call.ucmd_as<iommu_hw_info>();
  call.detail = fmt::format("flags={:#x} dev={:#x} data_len={:#x} data_uptr={:#x} type={:#x}",
                            cmd.flags, cmd.dev_id, cmd.data_len, cmd.data_uptr, cmd.in_data_type);
  if (cmd.flags & ~IOMMU_HW_INFO_FLAG_INPUT_TYPE)
    return reject(call, EOPNOTSUPP, "flags {:#x}", cmd.flags);
  if (cmd.__reserved[0] || cmd.__reserved[1] || cmd.__reserved[2])
    return reject(call, EOPNOTSUPP, "__reserved is not zero");
  // Drivers take no random input type.
  if (!(cmd.flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE)) cmd.in_data_type = IOMMU_HW_INFO_TYPE_DEFAULT;
  std::shared_ptr<iommu::Unit> unit;
  {
    IommufdCtx& ctx = ctx_of(file);
    std::lock_guard lock(ctx.mu);
    auto d = ctx.get<IommufdDevice>(cmd.dev_id, ObjType::kDevice);
    if (!d) return reject(call, ENOENT, "no device {:#x}", cmd.dev_id);
    if (d->dev->group().noiommu())
      return reject(call, EOPNOTSUPP, "no-IOMMU device {} has no IOMMU to describe",
                    d->dev->spec().bdf);
    unit = unit_of(*d);
  }
  // Only VT-d has a hw_info op; TCE and a device without IOMMU report no data (TYPE_NONE).
  iommu_hw_info_vtd vtd{};
  u32 data_len = 0;
  if (unit->model() == iommu::Model::kVtd) {
    if (cmd.in_data_type != IOMMU_HW_INFO_TYPE_DEFAULT &&
        cmd.in_data_type != IOMMU_HW_INFO_TYPE_INTEL_VTD)
      return reject(call, EOPNOTSUPP, "unit {} reports type {:#x} only, not {:#x}", unit->name(),
                    static_cast<u32>(IOMMU_HW_INFO_TYPE_INTEL_VTD), cmd.in_data_type);
    const auto& vu = static_cast<const iommu::vtd::VtdUnit&>(*unit);
    vtd.cap_reg = vu.cap_reg();
    vtd.ecap_reg = vu.ecap_reg();
    data_len = sizeof(vtd);
    cmd.out_data_type = IOMMU_HW_INFO_TYPE_INTEL_VTD;
  } else {
    cmd.out_data_type = IOMMU_HW_INFO_TYPE_NONE;
  }
  const u32 copy_len = std::min(cmd.data_len, data_len);
  TRY(call.mem->will_write(cmd.data_uptr, cmd.data_len));
  if (copy_len != 0) {
    TRY(copy_to_user(call, cmd.data_uptr, &vtd, copy_len));
  }
  // Zero what the caller's buffer has beyond the kernel's data.
  static const u8 kZeros[4096] = {};
  for (u64 off = copy_len; off < cmd.data_len;) {
    const u64 n = std::min<u64>(sizeof(kZeros), cmd.data_len - off);
    TRY(copy_to_user(call, cmd.data_uptr + off, kZeros, n));
    off += n;
  }
  cmd.data_len = data_len;
  // No dirty tracking (ECAP.SSADS), no PASID on any simulated unit or device; and no device
  // model has an ATS capability, which Linux 7.x reports (IOMMU_CAP_PCI_ATS_SUPPORTED unset).
  cmd.out_capabilities = IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED;
  cmd.out_max_pasid_log2 = 0;
  call.detail += fmt::format(" -> type={:#x} len={:#x}", cmd.out_data_type, data_len);
  TRY(respond(call, sizeof(cmd)));
  return 0;
}

}  // namespace idev_ioctl

}  // namespace vfio_emu::core
