// PCI hot reset: the order of checks and the errno of each follow Linux 7.3's
// vfio_pci_ioctl_get_pci_hot_reset_info, vfio_pci_ioctl_pci_hot_reset(_groups) and
// vfio_pci_dev_set_hot_reset (drivers/vfio/pci/vfio_pci_core.c).
#include "core/pci_hot_reset.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "core/device.h"
#include "core/emulator.h"
#include "core/iommufd/user_copy.h"
#include "core/reject.h"
#include "core/uapi/vfio.h"

namespace vfio_emu::core {

using namespace uapi;

namespace {

bool same_bus(const PciAddress& a, const PciAddress& b) {
  return a.segment == b.segment && a.bus == b.bus;
}

// The iommufd context a device is bound to (device_iommufd), Emulator::mu held.
const IommufdCtx* device_ictx(const Device& d, u32* devid) {
  return device_iommufd(d, devid).get();
}

// iommufd_ctx_has_group: a device of the group is bound to `ctx`.
bool ctx_has_group(const IommufdCtx* ctx, const Group& g) {
  for (const auto& d : g.devices()) {
    u32 devid = 0;
    if (device_ictx(*d, &devid) == ctx) return true;
  }
  return false;
}

// vfio_iommufd_get_dev_id as vfio_pci_fill_devs turns it into a devid: the device's id in `ctx`,
// VFIO_PCI_DEVID_OWNED when only its group is bound there, VFIO_PCI_DEVID_NOT_OWNED otherwise.
u32 devid_in(const Device& d, const IommufdCtx* ctx) {
  u32 devid = 0;
  if (ctx != nullptr && device_ictx(d, &devid) == ctx && devid != 0) return devid;
  if (ctx != nullptr && ctx_has_group(ctx, d.group())) return VFIO_PCI_DEVID_OWNED;
  return static_cast<u32>(VFIO_PCI_DEVID_NOT_OWNED);
}

// vfio_device_cdev_opened: the device is bound through its cdev (not the group path).
bool cdev_opened(const Device& d) { return d.bound_file != nullptr; }

const char* scope_name(ResetScopeKind k) {
  return k == ResetScopeKind::kSlot ? "slot" : k == ResetScopeKind::kBus ? "bus" : "no";
}

}  // namespace

ResetScope hot_reset_scope(const Emulator& emu, const Device& dev) {
  const PciAddress me = pci_address(dev.spec().bdf);
  std::vector<Device*> bus;
  for (const auto& g : emu.groups())
    for (const auto& d : g->devices())
      if (same_bus(pci_address(d->spec().bdf), me)) bus.push_back(d.get());
  ResetScope scope;
  if (dev.spec().hot_reset == HotReset::kSlot) {  // pci_probe_reset_slot
    scope.kind = ResetScopeKind::kSlot;
    for (Device* d : bus)
      if (pci_address(d->spec().bdf).slot() == me.slot()) scope.devices.push_back(d);
  } else if (me.bus != 0 &&  // pci_probe_reset_bus: a bridge above, and no function refuses
             std::none_of(bus.begin(), bus.end(), [](const Device* d) {
               return d->spec().hot_reset == HotReset::kNone;
             })) {
    scope.kind = ResetScopeKind::kBus;
    scope.devices = std::move(bus);
  }
  // In bus order, as pci_walk_bus visits them.
  std::sort(scope.devices.begin(), scope.devices.end(), [](const Device* a, const Device* b) {
    return pci_address(a->spec().bdf).devfn < pci_address(b->spec().bdf).devfn;
  });
  return scope;
}

namespace device_ioctl {

namespace {

Device& device_of(File& f) { return *static_cast<DeviceFile&>(f).device; }

Err no_reset(IoctlCall& call, const Device& dev) {
  return reject(call, ENODEV, "device {}: neither a slot reset nor a bus reset is possible "
                "(hot_reset {}, bus {:#x})", dev.spec().bdf,
                dev.spec().hot_reset == HotReset::kNone ? "none" : "auto/root bus",
                pci_address(dev.spec().bdf).bus);
}

}  // namespace

// ---- VFIO_DEVICE_GET_PCI_HOT_RESET_INFO --------------------------------------------------------

Result<long> get_pci_hot_reset_info(Emulator& emu, File& file, IoctlCall& call) {
  constexpr u32 minsz = sizeof(vfio_pci_hot_reset_info);  // offsetofend(count) = 12
  auto hdr = call.ucmd_as<vfio_pci_hot_reset_info>();      // argsz >= minsz (ArgRule::kArgsz)
  call.detail = fmt::format("argsz={:#x}", hdr.argsz);
  Device& dev = device_of(file);
  hdr.flags = 0;
  const ResetScope scope = hot_reset_scope(emu, dev);
  if (scope.kind == ResetScopeKind::kNone) return no_reset(call, dev);
  const u64 room = (u64{hdr.argsz} - minsz) / sizeof(vfio_pci_dependent_device);
  if (scope.devices.size() > room) {
    hdr.count = static_cast<u32>(scope.devices.size());
    TRY(reply_to_user(call, call.arg, &hdr, minsz));
    return reject(call, ENOSPC, "device {}: argsz {:#x} has room for {:#x} of the {:#x} devices "
                  "a {} reset affects (count set)", dev.spec().bdf, hdr.argsz, room,
                  scope.devices.size(), scope_name(scope.kind));
  }
  std::vector<vfio_pci_dependent_device> out(scope.devices.size());
  {
    std::lock_guard lock(emu.mu);
    u32 own_devid = 0;
    const IommufdCtx* ctx = device_ictx(dev, &own_devid);
    if (cdev_opened(dev))
      hdr.flags = VFIO_PCI_HOT_RESET_FLAG_DEV_ID | VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED;
    for (size_t i = 0; i < scope.devices.size(); ++i) {
      const Device& d = *scope.devices[i];
      const PciAddress a = pci_address(d.spec().bdf);
      out[i].segment = a.segment;
      out[i].bus = a.bus;
      out[i].devfn = a.devfn;
      if (hdr.flags & VFIO_PCI_HOT_RESET_FLAG_DEV_ID) {
        out[i].devid = devid_in(d, ctx);
        if (out[i].devid == static_cast<u32>(VFIO_PCI_DEVID_NOT_OWNED))
          hdr.flags &= ~VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED;
      } else {
        out[i].group_id = d.group().id();
      }
    }
  }
  TRY(reply_to_user(call, call.arg + minsz, out.data(), out.size() * sizeof(out[0])));
  hdr.count = static_cast<u32>(out.size());
  TRY(reply_to_user(call, call.arg, &hdr, minsz));
  call.detail += fmt::format(" -> {} reset, count={} flags={:#x}", scope_name(scope.kind),
                             hdr.count, hdr.flags);
  return 0;
}

// ---- VFIO_DEVICE_PCI_HOT_RESET -----------------------------------------------------------------

Result<long> pci_hot_reset(Emulator& emu, File& file, IoctlCall& call) {
  const auto hdr = call.ucmd_as<vfio_pci_hot_reset>();  // argsz >= minsz (ArgRule::kArgsz)
  call.detail = fmt::format("argsz={:#x} flags={:#x} count={:#x}", hdr.argsz, hdr.flags,
                            hdr.count);
  Device& dev = device_of(file);
  if (hdr.flags) return reject(call, EINVAL, "flags {:#x}: none is defined", hdr.flags);
  bool by_cdev = false;
  {
    std::lock_guard lock(emu.mu);
    by_cdev = cdev_opened(dev);
  }
  // A zero-length array is only for a cdev-bound device, and only it may pass one.
  if ((hdr.count != 0) == by_cdev)
    return reject(call, EINVAL, "count {:#x}: a {} device passes {}", hdr.count,
                  by_cdev ? "cdev-bound" : "group-path",
                  by_cdev ? "no group fds (count 0)" : "the group fds of the affected devices");
  const ResetScope scope = hot_reset_scope(emu, dev);
  if (scope.kind == ResetScopeKind::kNone) return no_reset(call, dev);

  // vfio_pci_ioctl_pci_hot_reset_groups: at most one group per affected device, then every fd
  // must be a group file (fget: EBADF; vfio_file_is_group: EINVAL). Resolved before
  // Emulator::mu: on FUSE identifying a file is itself a request to this daemon.
  std::vector<const Group*> groups;
  std::vector<std::shared_ptr<File>> held;  // the group files stay open across the reset
  if (hdr.count != 0) {
    if (hdr.count > scope.devices.size())
      return reject(call, EINVAL, "count {:#x} > the {:#x} devices a {} reset affects", hdr.count,
                    scope.devices.size(), scope_name(scope.kind));
    std::vector<std::int32_t> fds(hdr.count);
    const u64 at = call.arg + offsetof(vfio_pci_hot_reset, group_fds);
    if (Status st = call.mem->read(at, fds.data(), fds.size() * sizeof(fds[0])); !st)
      return reject(call, st.error(), "reading {:#x} group fds at {:#x}", hdr.count, at);
    for (std::int32_t fd : fds) {
      auto resolved = call.fds->resolve(fd);
      if (!resolved) return reject(call, resolved.error(), "group fd {} is not an open file", fd);
      std::shared_ptr<File> f = resolved.take();
      if (!f || f->kind() != NodeKind::kGroup)
        return reject(call, EINVAL, "fd {} is {}, not a VFIO group", fd,
                      f ? fmt::format("a {} node", node_kind_name(f->kind()))
                        : std::string("not a VFIO file"));
      groups.push_back(static_cast<GroupFile&>(*f).group);
      held.push_back(std::move(f));
    }
    call.detail += fmt::format(" fds={}", fmt::join(fds, ","));
  }

  // vfio_pci_dev_set_hot_reset: every affected device must be the caller's.
  {
    std::lock_guard lock(emu.mu);
    u32 own_devid = 0;
    const IommufdCtx* ctx = by_cdev ? device_ictx(dev, &own_devid) : nullptr;
    for (const Device* d : scope.devices) {
      const bool owned =
          by_cdev ? devid_in(*d, ctx) != static_cast<u32>(VFIO_PCI_DEVID_NOT_OWNED)
                  : std::find(groups.begin(), groups.end(), &d->group()) != groups.end();
      if (!owned)
        return reject(call, EINVAL, "device {} (group {}), reset with {} by the {} reset, is {}",
                      d->spec().bdf, d->group().id(), dev.spec().bdf, scope_name(scope.kind),
                      by_cdev ? "not bound to this iommufd, nor is its group"
                              : "in none of the groups passed");
    }
  }
  // pci_reset_bus: every function of the slot or bus. A function whose reset fails (fault
  // injection: fail_reset) is left in a bad state, as VFIO_DEVICE_RESET leaves it.
  std::string failed;
  for (Device* d : scope.devices) {
    if (d->spec().fail_reset) {
      std::lock_guard lock(emu.mu);
      d->bad_state = true;
      failed += (failed.empty() ? "" : ",") + d->spec().bdf;
      continue;
    }
    d->reset();
  }
  call.detail += fmt::format(" -> {} reset of {} device(s)", scope_name(scope.kind),
                             scope.devices.size());
  if (!failed.empty())
    return reject(call, EIO, "{} reset: the reset of {} failed; left in a bad state",
                  scope_name(scope.kind), failed);
  return 0;
}

}  // namespace device_ioctl
}  // namespace vfio_emu::core
