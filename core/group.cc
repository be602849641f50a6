// /dev/vfio/<group>: GET_STATUS, SET_CONTAINER (the BIND: a container fd or an iommufd fd),
// UNSET_CONTAINER, GET_DEVICE_FD (drivers/vfio/group.c).
#include <cctype>
#include <cstring>
#include <string_view>

#include "core/group.h"

#include "core/container.h"
#include "core/device.h"
#include "core/emulator.h"
#include "core/iommufd/iommufd.h"
#include "core/log.h"
#include "core/node_type.h"
#include "core/reject.h"
#include "core/uapi/vfio.h"
#include "core/uapi/vfio_emu.h"

namespace vfio_emu::core {

using namespace uapi;

namespace group_ioctl {

constexpr u64 kPageSize = 4096;

Group& group_of(File& f) { return *static_cast<GroupFile&>(f).group; }

// iommu_group_dma_owner_claimed(): a device bound through its cdev (to an iommufd) owns DMA.
bool dma_owner_claimed(const Group& g) {
  for (const auto& d : g.devices())
    if (d->bound_file != nullptr) return true;
  return false;
}

Result<long> get_status(Emulator& emu, File& file, IoctlCall& call) {
  constexpr u32 minsz = sizeof(vfio_group_status);
  // Announced first: under the CUSE retry protocol one round then brings the struct both ways.
  TRY(call.mem->will_write(call.arg, minsz));
  TRY(read_argsz_struct(call, minsz));
  auto status = call.ucmd_as<vfio_group_status>();
  Group& g = group_of(file);
  {
    std::lock_guard lock(emu.mu);
    if (g.has_iommu())
      status.flags = VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
    else if (!dma_owner_claimed(g))
      status.flags = VFIO_GROUP_FLAGS_VIABLE;
    else
      status.flags = 0;
  }
  call.detail = fmt::format("flags={:#x}", status.flags);
  TRY(call.mem->write(call.arg, &status, minsz));
  return 0;
}

Result<long> set_container(Emulator& emu, File& file, IoctlCall& call) {
  std::int32_t fd = 0;
  TRY(call.mem->read(call.arg, &fd, sizeof(fd)));
  call.detail = fmt::format("fd={}", fd);
  // Resolve before taking the group lock: on FUSE, identifying the file is itself a request
  // that another worker thread of this daemon answers.
  auto resolved = call.fds->resolve(fd);
  if (!resolved) return reject(call, resolved.error(), "fd {} is not an open file", fd);
  std::shared_ptr<File> target = resolved.take();
  Group& g = group_of(file);
  std::lock_guard lock(emu.mu);
  if (g.has_iommu())
    return reject(call, EINVAL, "group {} already has a {}", g.id(),
                  g.container ? "container" : "iommufd");
  // The trace detail is completed before the change: nothing may fail after it.
  if (target && target->kind() == NodeKind::kContainer) {
    auto& cf = static_cast<ContainerFile&>(*target);
    call.detail += fmt::format(" container={}", cf.container->id());
    TRY(container_attach_group(emu, cf.container, g, call));
    return 0;
  }
  if (target && target->kind() == NodeKind::kIommufd) {
    auto& f = static_cast<IommufdFile&>(*target);
    call.detail += " iommufd";
    TRY(iommufd_attach_group(emu, f.ctx, g, call));
    g.ictx = f.ctx;
    return 0;
  }
  return reject(call, EBADFD, "fd {} is {} (want a container or an iommufd)", fd,
                target ? fmt::format("a {} node", node_kind_name(target->kind()))
                       : std::string("not a VFIO file"));
}

Result<long> unset_container(Emulator& emu, File& file, IoctlCall& call) {
  Group& g = group_of(file);
  std::lock_guard lock(emu.mu);
  if (!g.has_iommu()) return reject(call, EINVAL, "group {} has no container", g.id());
  if (g.ictx) {
    iommufd_detach_group(emu, *g.ictx, g);
    g.ictx.reset();
    return 0;
  }
  // container_users: the group fd itself and every device fd obtained through the group.
  if (g.device_users != 0)
    return reject(call, EBUSY, "group {}: {} device fd(s) obtained through the group are open",
                  g.id(), g.device_users);
  container_detach_group(emu, g);
  return 0;
}


// strndup_user(arg, PAGE_SIZE): the string, NUL included, must fit in a page.
// Errors: EFAULT, EINVAL (longer than a page).
Result<std::string> read_device_name(IoctlCall& call) {
  std::string name;
  char buf[256];
  for (u64 off = 0;; off += sizeof(buf)) {
    const u64 chunk = std::min<u64>(sizeof(buf), kPageSize - off);
    if (chunk == 0) return reject(call, EINVAL, "device name longer than a page");
    // Read byte-wise at the end of readable memory: a string may end right before a hole.
    Status st = call.mem->read(call.arg + off, buf, chunk);
    if (!st) {
      if (st.error() != EFAULT) return Err{st.error()};
      bool terminated = false;
      for (size_t i = 0; i < chunk && !terminated; ++i) {
        if (!call.mem->read(call.arg + off + i, &buf[i], 1)) break;
        terminated = buf[i] == '\0';
      }
      if (!terminated) return reject(call, EFAULT, "device name at {:#x}", call.arg);
    }
    const void* nul = std::memchr(buf, '\0', chunk);
    if (nul != nullptr) {
      name.append(buf, static_cast<const char*>(nul) - buf);
      break;
    }
    name.append(buf, chunk);
  }
  return name;
}

// uuid_is_valid: "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" in hex digits of either case.
bool uuid_is_valid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

// vfio_pci_core_match: whether `name` is `dev`'s name: its PCI address, then nothing or spaces
// and options; the one option is "vf_token=<uuid>", once. Errors: EINVAL for an unknown or
// repeated option, a token that is not a UUID, and any token at all, since the device is neither
// an SR-IOV PF nor a VF (vfio_pci_validate_vf_token).
Result<bool> device_matches(IoctlCall& call, const Device& dev, std::string_view name) {
  constexpr std::string_view kVfTokenArg = "vf_token=";
  constexpr size_t kUuidStringLen = 36;
  const std::string& bdf = dev.spec().bdf;
  if (name.substr(0, bdf.size()) != bdf) return false;
  std::string_view rest = name.substr(bdf.size());
  bool vf_token = false;
  if (!rest.empty()) {
    if (rest[0] != ' ') return false;  // something else right after the address
    while (!rest.empty()) {
      if (rest[0] == ' ') {
        rest.remove_prefix(1);
        continue;
      }
      if (vf_token || !rest.starts_with(kVfTokenArg))
        return reject(call, EINVAL, "device {}: unknown or repeated option at {}", bdf,
                      quoted(rest));
      rest.remove_prefix(kVfTokenArg.size());
      if (rest.size() < kUuidStringLen || !uuid_is_valid(rest.substr(0, kUuidStringLen)))
        return reject(call, EINVAL, "device {}: vf_token {} is not a UUID", bdf,
                      quoted(rest.substr(0, kUuidStringLen)));
      vf_token = true;
      rest.remove_prefix(kUuidStringLen);
    }
  }
  if (vf_token)
    return reject(call, EINVAL, "device {}: VF token given, but it is not a PF or VF", bdf);
  return true;
}

// vfio_device_get_from_name: the first device of the group whose match accepts the name; a
// match that fails fails the lookup. Errors: ENODEV (no device of that name), EINVAL (options).
Result<Device*> device_from_name(IoctlCall& call, const Group& g, const std::string& name) {
  for (const auto& d : g.devices())
    if (TRY(device_matches(call, *d, name))) return d.get();
  return reject(call, ENODEV, "group {} has no device {}", g.id(), quoted(name));
}

Result<long> get_device_fd(Emulator& emu, File& file, IoctlCall& call) {
  const std::string name = TRY(read_device_name(call));
  call.detail = "name=" + quoted(name);
  Group& g = group_of(file);
  const Device* dev = TRY(device_from_name(call, g, name));
  const std::string& bdf = dev->spec().bdf;
  std::lock_guard lock(emu.mu);
  if (!g.has_iommu()) return reject(call, EINVAL, "group {} has no container", g.id());
  if (g.container && !g.container->driver)
    return reject(call, EINVAL, "group {}: container {} has no IOMMU set (VFIO_SET_IOMMU first)",
                  g.id(), g.container->id());
  // A daemon cannot create a file descriptor in the caller.
  return reject(call, EOPNOTSUPP,
                "device {}: a user-space emulator cannot create an fd in the caller; open "
                "/dev/vfio/devices/{} and use VFIO_DEVICE_BIND_IOMMUFD, or run under "
                "`vfio-emu run`", bdf, dev->cdev_name());
}

// VFIO_EMU_GROUP_DEVICE: which cdev serves a device of this group (for `vfio-emu run`'s
// supervisor). The name is matched as GET_DEVICE_FD matches it.
Result<long> group_device(Emulator&, File& file, IoctlCall& call) {
  const std::string name = TRY(read_device_name(call));
  call.detail = "name=" + quoted(name);
  const Device* dev = TRY(device_from_name(call, group_of(file), name));
  return long{dev->spec().cdev_index};
}

}  // namespace group_ioctl

void release_group(Emulator& emu, Group& g) {
  if (g.ictx) {
    iommufd_detach_group(emu, *g.ictx, g);
    g.ictx.reset();
  } else if (g.container) {
    container_detach_group(emu, g);
  }
  g.open_file = nullptr;
  g.released_file.reset();
}

namespace {

class GroupNodeType final : public NodeType {
 public:
  Result<std::shared_ptr<File>> open(Emulator& emu, const NodeInfo& node, u64 id,
                                     const Caller& caller, u64* conflict) const override {
    auto log = logger("core");
    Group* g = emu.group_by_id(node.index);
    if (g == nullptr) return err(ENODEV);
    // vfio_group_fops_open: a no-IOMMU group is for CAP_SYS_RAWIO only (before the EBUSYs).
    if (g->noiommu() && !caller.cap_sys_rawio) {
      if (rejection_log_allowed(*log, caller.pid))
        log->info("{} pid {} open: no-IOMMU group {} needs CAP_SYS_RAWIO: EPERM", node.path,
                  caller.pid, g->id());
      return err(EPERM);
    }
    std::lock_guard lock(emu.mu);
    if (g->open_file != nullptr) {
      if (rejection_log_allowed(*log, caller.pid))
        log->info("{} pid {} open: group {} is already open: EBUSY", node.path, caller.pid,
                  g->id());
      if (conflict != nullptr) *conflict = g->open_file->id();
      return err(EBUSY);
    }
    // vfio_group_fops_open (6.6+): EBUSY while a device is in use through its cdev, i.e.
    // bound (cdev_device_open_cnt is raised by BIND, not by open).
    for (const auto& d : g->devices()) {
      if (d->bound_file != nullptr) {
        if (rejection_log_allowed(*log, caller.pid))
          log->info("{} pid {} open: device {} of group {} is bound through its cdev: EBUSY",
                    node.path, caller.pid, d->spec().bdf, g->id());
        if (conflict != nullptr) *conflict = d->bound_file->id();
        return err(EBUSY);
      }
    }
    auto file = std::make_shared<GroupFile>(id, caller.pid, g);
    g->open_file = file.get();
    return std::shared_ptr<File>(std::move(file));
  }

  void release(Emulator& emu, const std::shared_ptr<File>& file) const override {
    Group& g = *static_cast<GroupFile&>(*file).group;
    if (g.device_users != 0)
      g.released_file = file;  // device fds obtained through it hold it: release later
    else
      release_group(emu, g);
  }
};

}  // namespace

const NodeType& group_node_type() {
  static const GroupNodeType type;
  return type;
}

}  // namespace vfio_emu::core
