// The VFIO device cdev: the order of checks and the errno of each follow shared/spec §5.10 and
// upstream vfio_df_ioctl_bind_iommufd / vfio_df_ioctl_attach_pt / vfio_pci_core_ioctl (6.18).
#include "core/device.h"

#include <linux/capability.h>

#include <algorithm>
#include <cstring>

#include "core/cleanup.h"
#include "core/command.h"
#include "core/container.h"
#include "core/device_dma.h"
#include "core/device_irqs.h"
#include "core/uapi/vfio_emu.h"
#include "core/emulator.h"
#include "core/group.h"
#include "core/iommufd/iommufd.h"
#include "core/iommufd/user_copy.h"
#include "core/log.h"
#include "core/node_type.h"
#include "core/reject.h"
#include "core/uapi/vfio.h"

namespace vfio_emu::core {

using namespace uapi;

constexpr u64 kPciCommand = 0x04;
constexpr u8 kPciCommandIo = 0x01;              // PCI_COMMAND_IO, low byte
constexpr u8 kPciCommandMemory = 0x02;          // PCI_COMMAND_MEMORY, low byte
constexpr u8 kPciCommandIntxDisableHi = 0x04;  // PCI_COMMAND_INTX_DISABLE (0x400), high byte

namespace device_ioctl {

DeviceFile& file_of(File& f) { return static_cast<DeviceFile&>(f); }

// vfio_pci_core_enable at the device's first open: pci_enable_device turns memory decoding on
// for a device with a memory BAR and I/O decoding for one with an I/O BAR
// (pci_enable_resources), then pci_save_state keeps the config space that the last close
// restores (vfio_pci_core_disable), so what one user wrote does not reach the next.
void enable_device(Device& dev) {
  std::lock_guard lock(dev.regions_mu);
  for (u32 bar = 0; bar < 6; ++bar)
    if (dev.model->bar_size(bar) != 0)
      dev.config[kPciCommand] |= dev.model->bar_is_io(bar) ? kPciCommandIo : kPciCommandMemory;
  dev.saved_config = dev.config;
}

// iommu_device_claim_dma_owner: the group's DMA belongs to one iommufd context at a time.
const Device* group_owned_elsewhere(const Device& dev, const IommufdCtx* ctx) {
  for (const auto& d : dev.group().devices()) {
    if (d.get() == &dev || d->bound_file == nullptr) continue;
    if (static_cast<const DeviceFile*>(d->bound_file)->ictx.get() != ctx) return d.get();
  }
  return nullptr;
}

// ---- VFIO_DEVICE_BIND_IOMMUFD ------------------------------------------------------------------

Result<long> bind_iommufd(Emulator& emu, File& file, IoctlCall& call) {
  DeviceFile& df = file_of(file);
  Device& dev = *df.device;
  constexpr u32 minsz = offsetof(vfio_device_bind_iommufd, out_devid) + 4;  // 16
  // An extensible struct: copy_struct_from_user on its argsz.
  TRY(read_sized_struct(call, minsz, sizeof(vfio_device_bind_iommufd)));
  const auto bind = call.ucmd_as<vfio_device_bind_iommufd>();
  call.detail = fmt::format("flags={:#x} iommufd={} token_uuid_ptr={:#x}", bind.flags,
                            bind.iommufd, bind.token_uuid_ptr);
  if (bind.iommufd < 0 || (bind.flags & ~VFIO_DEVICE_BIND_FLAG_TOKEN))
    return reject(call, EINVAL, "iommufd {} flags {:#x}", bind.iommufd, bind.flags);
  // What is read from the caller is read before Emulator::mu (on FUSE, identifying a file is
  // itself a request to this daemon); the errors are reported in Linux's order below.
  u8 uuid[16];
  Status token = (bind.flags & VFIO_DEVICE_BIND_FLAG_TOKEN)
                     ? call.mem->read(bind.token_uuid_ptr, uuid, sizeof(uuid))
                     : Status{};
  if (!token && token.error() != EFAULT) return Err{token.error()};
  auto resolved = call.fds->resolve(bind.iommufd);

  std::lock_guard lock(emu.mu);
  if (df.via_group != nullptr)
    return reject(call, EINVAL, "this device fd was obtained through group {}, not the cdev",
                  df.via_group->id());
  if (dev.group().open_file != nullptr) {
    call.conflict = dev.group().open_file->id();
    return reject(call, EBUSY, "group {} of device {} is open: the group path owns it",
                  dev.group().id(), dev.spec().bdf);
  }
  if (df.bound()) return reject(call, EINVAL, "this device fd is already bound");
  if (bind.flags & VFIO_DEVICE_BIND_FLAG_TOKEN) {
    if (!token)
      return reject(call, EFAULT, "reading the token UUID at {:#x}", bind.token_uuid_ptr);
    return reject(call, EINVAL, "device {}: VF token given, but it is not a PF or VF",
                  dev.spec().bdf);
  }
  if (!resolved) return reject(call, resolved.error(), "fd {} is not an open file", bind.iommufd);
  const std::shared_ptr<File> target = resolved.take();
  std::shared_ptr<IommufdCtx> ctx;
  if (target && target->kind() == NodeKind::kIommufd)
    ctx = static_cast<IommufdFile&>(*target).ctx;
  if (!ctx)
    return reject(call, EBADFD, "fd {} is {} (want an iommufd)", bind.iommufd,
                  target ? fmt::format("a {} node", node_kind_name(target->kind()))
                         : std::string("not a VFIO file"));
  if (dev.bound_file != nullptr || dev.group_path_files != 0) {
    if (dev.bound_file != nullptr) call.conflict = dev.bound_file->id();
    return reject(call, EINVAL, "device {} is already open through {}", dev.spec().bdf,
                  dev.bound_file != nullptr ? "another cdev fd" : "its group");
  }
  if (const Device* other = group_owned_elsewhere(dev, ctx.get()))
    return reject(call, EPERM, "device {} of group {} is bound to another iommufd",
                  other->spec().bdf, dev.group().id());
  if (dev.bad_state)
    return reject(call, EIO, "device {} is in a bad state (a reset failed or its PE is frozen); "
                  "open_device fails", dev.spec().bdf);
  const u64 out = call.arg + offsetof(vfio_device_bind_iommufd, out_devid);
  TRY(call.mem->will_write(out, sizeof(u32)));
  const u32 devid = TRY(iommufd_bind_device(emu, *ctx, dev, call));
  Cleanup unbind([&] { iommufd_unbind_device(emu, *ctx, devid); });
  TRY(copy_to_user(call, out, &devid, sizeof(devid)));
  call.detail += fmt::format(" -> devid={:#x}", devid);
  if (dev.group_path_files == 0) enable_device(dev);  // its first open
  df.irqs = open_device_irqs(dev);  // the last step that can fail
  unbind.cancel();
  df.ictx = std::move(ctx);
  df.devid = devid;
  dev.bound_file = &df;
  return 0;
}

// ---- VFIO_DEVICE_ATTACH_IOMMUFD_PT / DETACH ----------------------------------------------------

// What vfio_df_ioctl_attach_pt and _detach_pt check first: argsz, flags, and with the PASID
// flag (vfio-pci has pasid_attach_ioas) an argsz that reaches `pasid`, which is then read. Read
// here (ArgRule::kHandler): a device fd of the group path fails with ENOTTY before any of it.
template <class T>
Status read_pt_request(IoctlCall& call, T* s, u32 minsz, u32 pasid_flag) {
  TRY(read_argsz_struct(call, minsz));
  *s = call.ucmd_as<T>();
  call.detail = fmt::format("flags={:#x}", s->flags);
  if (s->flags & ~pasid_flag) return reject(call, EINVAL, "flags {:#x}", s->flags);
  if (s->flags & pasid_flag) {
    const u32 xend = offsetof(T, pasid) + sizeof(s->pasid);
    if (s->argsz < xend)
      return reject(call, EINVAL, "argsz {:#x} does not reach pasid ({:#x})", s->argsz, xend);
    TRY(call.mem->read(call.arg + offsetof(T, pasid), &s->pasid, sizeof(s->pasid)));
    call.detail += fmt::format(" pasid={:#x}", s->pasid);
  }
  return {};
}

// vfio_iommufd_physical_pasid_attach_ioas on a device without the PASID capability (none of
// the models has one, so no domain can be PASID-compatible): the PASID must fit the ida
// (ENOSPC), the object must exist (ENOENT), and then iommufd_hwpt_pasid_compat refuses every
// IOAS or HWPT (EINVAL), as it refuses anything else.
Status pasid_attach(Emulator& emu, const DeviceFile& df, u32 pasid, u32 pt_id, IoctlCall& call) {
  if (pasid > 0x7fffffff) return reject(call, ENOSPC, "pasid {:#x} is beyond the ida", pasid);
  if (!iommufd_object_exists(*df.ictx, pt_id)) return reject(call, ENOENT, "no object {:#x}", pt_id);
  (void)emu;
  return reject(call, EINVAL, "device {} has no PASID capability: no domain is PASID-compatible "
                "(pasid {:#x}, pt {:#x})", df.device->spec().bdf, pasid, pt_id);
}

// ATTACH and DETACH exist only for files opened through the cdev: on a device fd obtained
// through a group Linux hands them to vfio-pci, which does not know them.
Status cdev_only(Emulator& emu, const DeviceFile& df, IoctlCall& call) {
  std::lock_guard lock(emu.mu);
  if (df.via_group != nullptr)
    return reject(call, ENOTTY, "a device fd obtained through a group has no {}",
                  call.command ? call.command->name : std::string_view("cdev ioctl"));
  return {};
}

Result<long> attach_pt(Emulator& emu, File& file, IoctlCall& call) {
  DeviceFile& df = file_of(file);
  TRY(cdev_only(emu, df, call));
  vfio_device_attach_iommufd_pt attach;
  TRY(read_pt_request(call, &attach, offsetof(vfio_device_attach_iommufd_pt, pt_id) + 4,
                      VFIO_DEVICE_ATTACH_PASID));
  call.detail += fmt::format(" pt_id={:#x}", attach.pt_id);
  std::lock_guard lock(emu.mu);
  if (!df.bound()) return reject(call, EINVAL, "device not bound");
  if (attach.flags & VFIO_DEVICE_ATTACH_PASID)
    return Err{pasid_attach(emu, df, attach.pasid, attach.pt_id, call).error()};
  const u64 out = call.arg + offsetof(vfio_device_attach_iommufd_pt, pt_id);
  TRY(call.mem->will_write(out, sizeof(attach.pt_id)));
  const u32 hwpt = TRY(iommufd_attach_device(emu, *df.ictx, df.devid, attach.pt_id, call));
  Status st = copy_to_user(call, out, &hwpt, sizeof(hwpt));
  if (!st) {
    iommufd_detach_device(emu, *df.ictx, df.devid);  // as Linux: detached, even after a replace
    df.pt_id = 0;
    return Err{st.error()};
  }
  df.pt_id = hwpt;
  note_result(call, " -> hwpt={:#x}", hwpt);
  return 0;
}

Result<long> detach_pt(Emulator& emu, File& file, IoctlCall& call) {
  DeviceFile& df = file_of(file);
  TRY(cdev_only(emu, df, call));
  vfio_device_detach_iommufd_pt detach;
  TRY(read_pt_request(call, &detach, offsetof(vfio_device_detach_iommufd_pt, flags) + 4,
                      VFIO_DEVICE_DETACH_PASID));
  std::lock_guard lock(emu.mu);
  if (!df.bound()) return reject(call, EINVAL, "device not bound");
  // vfio_iommufd_physical_pasid_detach_ioas: a PASID that was never attached is no error.
  if (detach.flags & VFIO_DEVICE_DETACH_PASID) return 0;
  iommufd_detach_device(emu, *df.ictx, df.devid);  // blocked DMA; 0 even if nothing was attached
  df.pt_id = 0;
  return 0;
}

// ---- vfio-pci information ioctls ---------------------------------------------------------------

Result<long> get_info(Emulator&, File& file, IoctlCall& call) {
  auto info = call.ucmd_as<vfio_device_info>();  // argsz >= minsz (ArgRule::kArgsz)
  call.detail = fmt::format("argsz={:#x}", info.argsz);
  // No capability: no zPCI, and AtomicOps need a PCIe device. RESET: vdev->reset_works.
  info.flags = VFIO_DEVICE_FLAGS_PCI;
  if (file_of(file).device->model->has_function_reset()) info.flags |= VFIO_DEVICE_FLAGS_RESET;
  info.num_regions = VFIO_PCI_NUM_REGIONS;
  info.num_irqs = VFIO_PCI_NUM_IRQS;
  info.cap_offset = 0;
  info.pad = 0;
  TRY(reply_to_user(call, call.arg, &info, std::min<u64>(info.argsz, sizeof(info))));
  return 0;
}

Result<long> get_region_info(Emulator&, File& file, IoctlCall& call) {
  constexpr u32 minsz = offsetof(vfio_region_info, offset) + 8;  // 32
  auto info = call.ucmd_as<vfio_region_info>();  // argsz >= minsz (ArgRule::kArgsz)
  call.detail = fmt::format("argsz={:#x} index={:#x}", info.argsz, info.index);
  Device& dev = *file_of(file).device;
  bool msix_cap = false;
  switch (info.index) {
    case VFIO_PCI_CONFIG_REGION_INDEX: {
      info.offset = vfio_pci_index_to_offset(info.index);
      std::lock_guard lock(dev.regions_mu);
      info.size = dev.config.size();  // the model's: 256 conventional, 4096 PCI Express
      info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
      break;
    }
    case VFIO_PCI_BAR0_REGION_INDEX:
    case VFIO_PCI_BAR1_REGION_INDEX:
    case VFIO_PCI_BAR2_REGION_INDEX:
    case VFIO_PCI_BAR3_REGION_INDEX:
    case VFIO_PCI_BAR4_REGION_INDEX:
    case VFIO_PCI_BAR5_REGION_INDEX: {
      info.offset = vfio_pci_index_to_offset(info.index);
      std::lock_guard lock(dev.regions_mu);
      const u32 bar = info.index - VFIO_PCI_BAR0_REGION_INDEX;
      info.size = dev.model->bar_size(bar);
      info.flags = info.size ? VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE : 0;
      // vdev->bar_mmap_supported: a memory BAR (never I/O space), where the transport maps
      // (FUSE with passthrough; CUSE has no mmap). The MSI-X BAR says its table may be mapped
      // too (msix_mmappable_cap).
      if (info.size != 0 && !dev.model->bar_is_io(bar) && dev.bar_file != nullptr &&
          dev.bar_file->window(bar) != nullptr) {
        info.flags |= VFIO_REGION_INFO_FLAG_MMAP;
        if (msix_bar_locked(dev) == static_cast<int>(bar)) msix_cap = true;
      }
      break;
    }
    case VFIO_PCI_ROM_REGION_INDEX:  // no ROM and no shadow ROM
      info.offset = vfio_pci_index_to_offset(info.index);
      info.flags = 0;
      info.size = 0;
      break;
    case VFIO_PCI_VGA_REGION_INDEX:
      return reject(call, EINVAL, "index {:#x}: the device is not a VGA device", info.index);
    default:
      return reject(call, EINVAL, "index {:#x} >= {:#x} regions", info.index,
                    VFIO_PCI_NUM_REGIONS);
  }
  if (msix_cap) {  // cap_offset stays the caller's without capabilities
    // The capability chain follows the struct: copied only if argsz leaves room for it,
    // otherwise argsz says how much is needed (vfio_pci_ioctl_get_region_info).
    const vfio_info_cap_header cap{VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, 1, 0};
    info.flags |= VFIO_REGION_INFO_FLAG_CAPS;
    if (info.argsz < sizeof(info) + sizeof(cap)) {
      info.argsz = sizeof(info) + sizeof(cap);
      info.cap_offset = 0;
    } else {
      TRY(reply_to_user(call, call.arg + sizeof(info), &cap, sizeof(cap)));
      info.cap_offset = sizeof(info);
    }
  }
  TRY(reply_to_user(call, call.arg, &info, minsz));
  call.detail += fmt::format(" -> offset={:#x} size={:#x} flags={:#x}", info.offset, info.size,
                             info.flags);
  if (msix_cap) call.detail += fmt::format(" cap_offset={:#x}", info.cap_offset);
  return 0;
}

Result<long> get_irq_info(Emulator&, File& file, IoctlCall& call) {
  constexpr u32 minsz = offsetof(vfio_irq_info, count) + 4;  // 16
  auto info = call.ucmd_as<vfio_irq_info>();  // argsz >= minsz (ArgRule::kArgsz)
  call.detail = fmt::format("argsz={:#x} index={:#x}", info.argsz, info.index);
  if (info.index >= VFIO_PCI_NUM_IRQS)
    return reject(call, EINVAL, "index {:#x} >= {:#x}", info.index, VFIO_PCI_NUM_IRQS);
  Device& dev = *file_of(file).device;
  info.flags = VFIO_IRQ_INFO_EVENTFD;
  info.count = irq_count(dev, info.index);
  if (info.index == VFIO_PCI_INTX_IRQ_INDEX)
    info.flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
  else
    info.flags |= VFIO_IRQ_INFO_NORESIZE;
  TRY(reply_to_user(call, call.arg, &info, minsz));
  call.detail += fmt::format(" -> count={} flags={:#x}", info.count, info.flags);
  return 0;
}

Result<long> reset(Emulator& emu, File& file, IoctlCall& call) {
  Device& dev = *file_of(file).device;
  if (!dev.model->has_function_reset())  // !vdev->reset_works
    return reject(call, EINVAL, "device {} ({}) has no function reset method", dev.spec().bdf,
                  dev.model->name());
  if (dev.spec().fail_reset) {
    std::lock_guard lock(emu.mu);
    dev.bad_state = true;
    return reject(call, EIO, "device {}: the function reset failed; the device is left in a bad "
                  "state and cannot be opened again", dev.spec().bdf);
  }
  dev.reset();
  return 0;
}

// ---- VFIO_DEVICE_FEATURE ----------------------------------------------------------------------

// vfio_check_feature: true to go on, false for a PROBE that succeeds. Errors: EINVAL for an
// operation the feature does not have, neither GET nor SET, or fewer than `minsz` data bytes.
Result<bool> check_feature(IoctlCall& call, u32 flags, u64 argsz, u32 supported, u64 minsz) {
  const u32 ops = flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET);
  if (ops & ~supported)
    return reject(call, EINVAL, "feature {:#x}: operation {:#x} not supported (only {:#x})",
                  flags & VFIO_DEVICE_FEATURE_MASK, ops, supported);
  if (flags & VFIO_DEVICE_FEATURE_PROBE) return false;
  if (ops == 0) return reject(call, EINVAL, "flags {:#x}: neither GET nor SET", flags);
  if (argsz < minsz)
    return reject(call, EINVAL, "feature {:#x}: {:#x} data bytes < {:#x}",
                  flags & VFIO_DEVICE_FEATURE_MASK, argsz, minsz);
  return true;
}

// vfio_ioctl_device_feature, then vfio_pci_core_ioctl_feature for what the core does not know.
Result<long> device_feature(Emulator&, File& file, IoctlCall& call) {
  DeviceFile& df = file_of(file);
  constexpr u32 minsz = offsetof(vfio_device_feature, flags) + 4;  // 8
  const auto feature = call.ucmd_as<vfio_device_feature>();  // argsz >= minsz (kArgsz)
  call.detail = fmt::format("argsz={:#x} flags={:#x}", feature.argsz, feature.flags);
  constexpr u32 known = VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_SET |
                        VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_PROBE;
  if (feature.flags & ~known)
    return reject(call, EINVAL, "flags {:#x}: unknown bits {:#x}", feature.flags,
                  feature.flags & ~known);
  if (!(feature.flags & VFIO_DEVICE_FEATURE_PROBE) && (feature.flags & VFIO_DEVICE_FEATURE_SET) &&
      (feature.flags & VFIO_DEVICE_FEATURE_GET))
    return reject(call, EINVAL, "flags {:#x}: GET and SET without PROBE", feature.flags);
  const u32 id = feature.flags & VFIO_DEVICE_FEATURE_MASK;
  if (!df.irqs) return reject(call, EINVAL, "device {} is not open", df.device->spec().bdf);
  const u64 argsz = feature.argsz - minsz;
  const u64 data = call.arg + minsz;
  switch (id) {
    case VFIO_DEVICE_FEATURE_MIGRATION:
    case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE:
    case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE:
      return reject(call, ENOTTY, "feature {:#x}: device {} has no migration support", id,
                    df.device->spec().bdf);
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT:
      return reject(call, ENOTTY, "feature {:#x}: device {} has no DMA logging", id,
                    df.device->spec().bdf);
    case VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY: {
      if (!TRY(check_feature(call, feature.flags, argsz, VFIO_DEVICE_FEATURE_SET, 0))) return 0;
      TRY(df.irqs->low_power_entry(call, UniqueFd()));
      return 0;
    }
    case VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP: {
      std::int32_t wakeup_eventfd = -1;  // struct vfio_device_low_power_entry_with_wakeup
      if (!TRY(check_feature(call, feature.flags, argsz, VFIO_DEVICE_FEATURE_SET,
                             sizeof(wakeup_eventfd))))
        return 0;
      TRY(copy_from_user(call, data, &wakeup_eventfd, sizeof(wakeup_eventfd)));
      call.detail += fmt::format(" wakeup_eventfd={}", wakeup_eventfd);
      if (wakeup_eventfd < 0)
        return reject(call, EINVAL, "wakeup_eventfd {:#x} is negative",
                      static_cast<u32>(wakeup_eventfd));
      Result<UniqueFd> wake = fetch_eventfd(call, wakeup_eventfd);
      if (!wake)
        return reject(call, wake.error(), "wakeup_eventfd {:#x} is {}", wakeup_eventfd,
                      wake.error() == EBADF ? "not an open fd" : "not an eventfd");
      TRY(df.irqs->low_power_entry(call, wake.take()));
      return 0;
    }
    case VFIO_DEVICE_FEATURE_LOW_POWER_EXIT: {
      if (!TRY(check_feature(call, feature.flags, argsz, VFIO_DEVICE_FEATURE_SET, 0))) return 0;
      df.irqs->low_power_exit();
      return 0;
    }
    case VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2:  // 7.x: vfio_main.c checks migration_flags
      return reject(call, EINVAL, "feature {:#x}: device {} has no pre-copy migration", id,
                    df.device->spec().bdf);
    case VFIO_DEVICE_FEATURE_PCI_VF_TOKEN:
      return reject(call, ENOTTY, "feature {:#x}: device {} is not an SR-IOV PF", id,
                    df.device->spec().bdf);
    default:
      return reject(call, ENOTTY, "feature {:#x}: unknown to vfio-pci", id);
  }
}

// ---- VFIO_EMU_DEVICE_USE_GROUP ----------------------------------------------------------------

// What VFIO_GROUP_GET_DEVICE_FD's vfio_df_group_open does, for a cdev file that `vfio-emu run`'s
// supervisor opened on the caller's behalf (core/uapi/vfio_emu.h).
Result<long> use_group(Emulator& emu, File& file, IoctlCall& call) {
  DeviceFile& df = file_of(file);
  Device& dev = *df.device;
  const int group_fd = static_cast<int>(call.arg);
  call.detail = fmt::format("group_fd={}", group_fd);
  auto resolved = call.fds->resolve(group_fd);
  if (!resolved) return reject(call, resolved.error(), "fd {} is not an open file", group_fd);
  const std::shared_ptr<File> target = resolved.take();
  if (!target || target->kind() != NodeKind::kGroup)
    return reject(call, EBADFD, "fd {} is not a group node", group_fd);
  Group& g = *static_cast<GroupFile&>(*target).group;
  std::lock_guard lock(emu.mu);
  if (&g != &dev.group())
    return reject(call, EINVAL, "device {} is in group {}, not {}", dev.spec().bdf,
                  dev.group().id(), g.id());
  if (df.access_granted()) return reject(call, EINVAL, "this device fd is already in use");
  if (dev.bound_file != nullptr) {
    call.conflict = dev.bound_file->id();
    return reject(call, EINVAL, "device {} is bound through another cdev fd", dev.spec().bdf);
  }
  if (!g.has_iommu()) return reject(call, EINVAL, "group {} has no container", g.id());
  if (g.container && !g.container->driver)
    return reject(call, EINVAL, "group {}: container {} has no IOMMU set", g.id(),
                  g.container->id());
  if (dev.bad_state || group_frozen(g))
    return reject(call, EIO, "device {} is in a bad state (a reset failed or its PE is frozen); "
                  "open_device fails", dev.spec().bdf);
  if (g.ictx && g.noiommu()) {
    // vfio_df_group_open: the first open of a no-IOMMU device through an iommufd needs
    // CAP_SYS_RAWIO and no compat IOAS ("the user cannot have done something that implies they
    // expected translation to exist"); it binds nothing and attaches nothing.
    if (dev.group_path_files == 0) {
      const bool has_ioas = iommufd_has_compat_ioas(*g.ictx);
      if (!call.env->capable(CAP_SYS_RAWIO) || has_ioas)
        return reject(call, EPERM, "no-IOMMU device {}: {}", dev.spec().bdf,
                      has_ioas ? "the iommufd has a compat IOAS" : "needs CAP_SYS_RAWIO");
    }
  } else if (g.ictx) {
    const u32 devid = TRY(iommufd_bind_device(emu, *g.ictx, dev, call));
    auto hwpt = iommufd_attach_compat(emu, *g.ictx, devid, call);
    if (!hwpt) {
      iommufd_unbind_device(emu, *g.ictx, devid);
      return Err{hwpt.error()};
    }
    df.ictx = g.ictx;
    df.devid = devid;
    df.pt_id = *hwpt;
    if (dev.group_iommufd_devid == 0) dev.group_iommufd_devid = devid;
  }
  if (dev.group_path_files == 0) enable_device(dev);  // its first open (no cdev is bound)
  df.irqs = open_device_irqs(dev);
  df.via_group = &g;
  ++g.device_users;
  ++dev.group_path_files;
  return 0;
}

}  // namespace device_ioctl

namespace {

// ---- pread / pwrite ----------------------------------------------------------------------------

Err refuse(const DeviceFile& f, bool write, u64 offset, u64 len, int e, std::string_view why) {
  auto log = logger("core");
  if (rejection_log_allowed(*log, f.opener()))
    log->info("vfio/devices/{} pid {} {} offset {:#x} len {:#x}: {}: {} ({})",
              f.device->cdev_name(), f.opener(), write ? "pwrite" : "pread", offset, len,
              why, errno_name(e), e);
  return Err{e};
}

// vfio_pci_bar_rw of BAR `bar` at `pos`: reads into `out`, or writes from `in` (exactly one is
// set); cut at the end of the BAR. `why` says what an error is.
Result<u64> bar_rw(Device& dev, u32 bar, u64 pos, u8* out, const u8* in, u64 len, const char** why) {
  std::lock_guard lock(dev.regions_mu);
  const u64 size = dev.model->bar_size(bar);
  if (size == 0) return *why = "the region is empty", Err{EINVAL};
  if (pos >= size) return *why = "past the end of the BAR", Err{EINVAL};
  const u64 n = std::min(len, size - pos);
  // __vfio_pci_memory_enabled: with memory decoding off a memory BAR does not answer (an I/O BAR
  // is not tested: vfio_pci_bar_rw's test_mem is IORESOURCE_MEM).
  if (!dev.model->bar_is_io(bar) && !(dev.config[kPciCommand] & kPciCommandMemory))
    return *why = "memory decoding is off (PCI_COMMAND_MEMORY)", Err{EIO};
  if (in != nullptr)
    dev.model->bar_write(bar, pos, in, n);
  else
    dev.model->bar_read(bar, pos, out, n);
  return n;
}

// vfio_pci_rw: reads into `out`, or writes from `in` (exactly one is set).
Result<u64> region_rw(Emulator& emu, DeviceFile& f, u64 offset, u8* out, const u8* in, u64 len) {
  const bool write = in != nullptr;
  {
    std::lock_guard lock(emu.mu);
    if (!f.access_granted()) return refuse(f, write, offset, len, EINVAL, "device not bound");
  }
  if (len == 0) return u64{0};
  const u64 index = offset >> kVfioPciOffsetShift;
  if (index >= VFIO_PCI_NUM_REGIONS)
    return refuse(f, write, offset, len, EINVAL, "no such region");
  // vfio_pci_rw wakes a device in low power for the access.
  const AwakeScope awake(f.irqs.get());
  const u64 pos = offset & ((u64{1} << kVfioPciOffsetShift) - 1);
  Device& dev = *f.device;
  dev.model->settle();  // stores made through a mapping come first
  switch (index) {
    case VFIO_PCI_CONFIG_REGION_INDEX: {
      u64 end;
      std::lock_guard lock(dev.regions_mu);
      if (pos >= dev.config.size() || __builtin_add_overflow(pos, len, &end) ||
          end > dev.config.size())
        return refuse(f, write, offset, len, EFAULT, "outside config space");
      for (u64 i = 0; i < len; ++i) {
        u8& cfg = dev.config[pos + i];
        if (write) {
          // Read-only bits keep their value: BAR sizing reads back the size mask.
          const u8 mask = dev.config_write_mask[pos + i];
          cfg = static_cast<u8>((cfg & ~mask) | (in[i] & mask));
        } else {
          out[i] = cfg;
        }
      }
      // vfio_basic_config_write: a write of the command register's INTx-disable bit masks or
      // unmasks INTx (Device::regions_mu before the interrupt lock).
      if (write && pos <= kPciCommand + 1 && pos + len > kPciCommand && f.irqs)
        f.irqs->set_virq_disabled((dev.config[kPciCommand + 1] & kPciCommandIntxDisableHi) != 0);
      return len;
    }
    case VFIO_PCI_BAR0_REGION_INDEX:
    case VFIO_PCI_BAR1_REGION_INDEX:
    case VFIO_PCI_BAR2_REGION_INDEX:
    case VFIO_PCI_BAR3_REGION_INDEX:
    case VFIO_PCI_BAR4_REGION_INDEX:
    case VFIO_PCI_BAR5_REGION_INDEX: {
      const char* why = nullptr;
      auto n = bar_rw(dev, static_cast<u32>(index - VFIO_PCI_BAR0_REGION_INDEX), pos, out, in, len,
                      &why);
      if (!n) return refuse(f, write, offset, len, n.error(), why);
      return n;
    }
    case VFIO_PCI_ROM_REGION_INDEX:
      return refuse(f, write, offset, len, EINVAL, write ? "the ROM is read-only" : "no ROM");
    default:
      return refuse(f, write, offset, len, EINVAL, "the region is empty");
  }
}

}  // namespace

std::shared_ptr<IommufdCtx> device_iommufd(const Device& d, u32* devid) {
  if (d.bound_file != nullptr) {
    const auto& f = static_cast<const DeviceFile&>(*d.bound_file);
    *devid = f.devid;
    return f.ictx;
  }
  if (d.group().ictx && d.group_iommufd_devid != 0) {
    *devid = d.group_iommufd_devid;
    return d.group().ictx;
  }
  return nullptr;
}

void release_device_file(Emulator& emu, DeviceFile& f) {
  if (f.bound()) {
    iommufd_unbind_device(emu, *f.ictx, f.devid);
    if (f.device->bound_file == &f) f.device->bound_file = nullptr;
    if (f.via_group != nullptr && f.device->group_iommufd_devid == f.devid)
      f.device->group_iommufd_devid = 0;
    f.devid = 0;
    f.pt_id = 0;
    f.ictx.reset();  // the context goes here if its file and groups are gone
  }
  if (Group* g = f.via_group) {
    f.via_group = nullptr;
    --f.device->group_path_files;
    // The group file's release waits for its last device file (see Group::released_file).
    if (--g->device_users == 0 && g->released_file) release_group(emu, *g);
  }
  if (f.irqs) {
    // vfio_device_last_close: the device's last open file.
    if (f.device->bound_file == nullptr && f.device->group_path_files == 0) {
      f.irqs->close_device();
      std::lock_guard lock(f.device->regions_mu);  // vfio_pci_core_disable: pci_restore_state
      if (!f.device->saved_config.empty()) f.device->config = f.device->saved_config;
    }
    f.irqs.reset();
  }
}

Result<u64> device_read(Emulator& emu, DeviceFile& f, u64 offset, void* buf, u64 len) {
  return region_rw(emu, f, offset, static_cast<u8*>(buf), nullptr, len);
}

Result<u64> device_write(Emulator& emu, DeviceFile& f, u64 offset, const void* buf, u64 len) {
  return region_rw(emu, f, offset, nullptr, static_cast<const u8*>(buf), len);
}

Status device_bar_store(Device& dev, u32 bar, u64 pos, u64 value, u32 width) {
  if (bar >= 6 || !dev.model->bar_stores_trapped(bar) || (width != 1 && width != 2 && width != 4 &&
                                                          width != 8)) {
    logger("core")->info("{} BAR {} offset {:#x} width {}: a store trapped where none is: EINVAL",
                         dev.spec().bdf, bar, pos, width);
    return Err{EINVAL};
  }
  dev.model->settle();
  u8 bytes[8];
  std::memcpy(bytes, &value, sizeof(bytes));
  const char* why = nullptr;
  auto n = bar_rw(dev, bar, pos, nullptr, bytes, width, &why);
  if (!n || *n != width) {
    const int e = n ? EINVAL : n.error();
    logger("core")->info("{} BAR {} offset {:#x} width {} value {:#x}: trapped store refused: {} "
                         "({})", dev.spec().bdf, bar, pos, width, value,
                         n ? "past the end of the BAR" : why, errno_name(e));
    return Err{e};
  }
  return {};
}

namespace {

class DeviceNodeType final : public NodeType {
 public:
  Result<std::shared_ptr<File>> open(Emulator& emu, const NodeInfo& node, u64 id,
                                     const Caller& caller, u64*) const override {
    Device* d = emu.device_by_cdev(node.index);
    if (d == nullptr) return err(ENODEV);
    // vfio_device_fops_cdev_open: a no-IOMMU device is for CAP_SYS_RAWIO only.
    if (d->group().noiommu() && !caller.cap_sys_rawio) {
      auto log = logger("core");
      if (rejection_log_allowed(*log, caller.pid))
        log->info("{} pid {} open: no-IOMMU device {} needs CAP_SYS_RAWIO: EPERM", node.path,
                  caller.pid, d->spec().bdf);
      return err(EPERM);
    }
    std::lock_guard lock(emu.mu);
    ++d->cdev_opens;
    return std::shared_ptr<File>(std::make_shared<DeviceFile>(id, caller.pid, d));
  }

  void release(Emulator& emu, const std::shared_ptr<File>& file) const override {
    auto& df = static_cast<DeviceFile&>(*file);
    release_device_file(emu, df);
    --df.device->cdev_opens;
  }

  // vfio_device_fops_unl_ioctl: BIND (and our USE_GROUP) come first; every other ioctl, known
  // or not, is EINVAL until access is granted, and then runs with the device awake (runtime PM
  // get/put around it: a device in low power wakes up for it).
  Status admit(Emulator& emu, File& file, IoctlCall& call, const Command* c,
               Route& route) const override {
    if (c != nullptr && c->has(kBeforeBind)) return {};
    auto& df = static_cast<DeviceFile&>(file);
    {
      std::lock_guard lock(emu.mu);
      if (!df.access_granted())
        return reject(call, EINVAL, "cmd {:#x}: device not bound (VFIO_DEVICE_BIND_IOMMUFD "
                      "first)", call.cmd);
    }
    route.hold = std::make_shared<AwakeScope>(df.irqs.get());
    df.device->model->settle();  // stores made through a mapping come first
    return {};
  }

  Result<u64> read(Emulator& emu, File& file, u64 offset, void* buf, u64 len) const override {
    return device_read(emu, static_cast<DeviceFile&>(file), offset, buf, len);
  }
  Result<u64> write(Emulator& emu, File& file, u64 offset, const void* buf,
                    u64 len) const override {
    return device_write(emu, static_cast<DeviceFile&>(file), offset, buf, len);
  }
};

}  // namespace

void connect_device_models(Emulator& emu, bool connect) {
  if (connect) logger(devices::kDevicesLogger);  // registered: the models log through it
  for (const auto& g : emu.groups()) {
    for (const auto& d : g->devices()) {
      if (!connect) {
        d->model->connect(nullptr, nullptr);
        continue;
      }
      d->dma_port = std::make_unique<DeviceDma>(emu, *d);
      d->irq_sink = std::make_unique<FunctionInterruptSink>(*d);
      d->model->connect(d->dma_port.get(), d->irq_sink.get());
    }
  }
}

Status enable_bar_mmap(Emulator& emu) {
  std::vector<std::pair<Device*, std::unique_ptr<devices::BarFile>>> made;
  for (const auto& g : emu.groups()) {
    for (const auto& d : g->devices()) {
      std::array<u64, devices::BarFile::kBars> sizes{};
      bool any = false;
      for (u32 bar = 0; bar < devices::BarFile::kBars; ++bar) {
        // vfio_pci_core_enable maps a BAR of at least a page.
        if (!d->model->bar_mappable(bar) || d->model->bar_is_io(bar) ||
            d->model->bar_size(bar) < 4096)
          continue;
        sizes[bar] = d->model->bar_size(bar);
        any = true;
      }
      if (!any) continue;
      auto file = devices::BarFile::create(
          fmt::format("vfio-emu {} {} BARs", d->spec().bdf, d->model->name()), sizes);
      if (!file) return Err{file.error()};
      made.emplace_back(d.get(), file.take());
    }
  }
  // All made: nothing is half enabled.
  for (auto& [d, file] : made) {
    std::lock_guard lock(d->regions_mu);
    d->bar_file = std::move(file);
    for (u32 bar = 0; bar < devices::BarFile::kBars; ++bar)
      if (devices::BarWindow* w = d->bar_file->window(bar)) d->model->attach_window(bar, w);
  }
  return {};
}

int device_bar_fd(Emulator& emu, const NodeInfo& node) {
  if (node.kind != NodeKind::kDevice) return -1;
  Device* d = emu.device_by_cdev(node.index);
  if (d == nullptr) return -1;
  std::lock_guard lock(d->regions_mu);
  return d->bar_file != nullptr ? d->bar_file->fd() : -1;
}

const NodeType& device_node_type() {
  static const DeviceNodeType type;
  return type;
}

}  // namespace vfio_emu::core
