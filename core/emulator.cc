#include "core/emulator.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "core/container.h"
#include "core/device.h"
#include "core/iommufd/iommufd.h"
#include "core/log.h"
#include "core/reject.h"
#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"
#include "core/uapi/vfio_emu.h"
#include "iommu/table_memory.h"

namespace vfio_emu::core {

// ---- LockedMemory ----------------------------------------------------------------------------

Status LockedMemory::charge(pid_t pid, u64 bytes, u64 limit, bool cap_ipc_lock) {
  std::lock_guard lock(mu_);
  u64& have = bytes_[pid];
  if (!cap_ipc_lock && (have + bytes < have || have + bytes > limit)) {
    if (have == 0) bytes_.erase(pid);
    return err(ENOMEM);
  }
  have += bytes;
  return {};
}

void LockedMemory::uncharge(pid_t pid, u64 bytes) {
  if (bytes == 0) return;
  std::lock_guard lock(mu_);
  auto it = bytes_.find(pid);
  if (it == bytes_.end()) return;
  it->second -= std::min(it->second, bytes);
  if (it->second == 0) bytes_.erase(it);
}

u64 LockedMemory::charged(pid_t pid) const {
  std::lock_guard lock(mu_);
  auto it = bytes_.find(pid);
  return it == bytes_.end() ? 0 : it->second;
}

std::vector<std::pair<pid_t, u64>> LockedMemory::charges() const {
  std::vector<std::pair<pid_t, u64>> all;
  {
    std::lock_guard lock(mu_);
    all.assign(bytes_.begin(), bytes_.end());
  }
  std::sort(all.begin(), all.end());
  return all;
}

// ---- OpenFileCounts --------------------------------------------------------------------------

Status OpenFileCounts::add(uid_t uid) {
  std::lock_guard lock(mu_);
  u32& n = open_[uid];
  if (uid != 0 && n >= limit_) {
    if (n == 0) open_.erase(uid);
    return err(ENFILE);
  }
  ++n;
  return {};
}

void OpenFileCounts::remove(uid_t uid) {
  std::lock_guard lock(mu_);
  auto it = open_.find(uid);
  if (it == open_.end()) return;
  if (--it->second == 0) open_.erase(it);
}

u32 OpenFileCounts::count(uid_t uid) const {
  std::lock_guard lock(mu_);
  auto it = open_.find(uid);
  return it == open_.end() ? 0 : it->second;
}

// ---- Emulator --------------------------------------------------------------------------------

Emulator::Emulator(Topology topology)
    : topology_(std::move(topology)),
      table_budget_(std::make_shared<iommu::TableBudget>(topology_.limits.table_memory)),
      open_files_(topology_.limits.open_files_per_uid) {
  for (const auto& unit : topology_.units) unit->share_table_budget(table_budget_);
  nodes_.push_back(NodeInfo{"vfio/vfio", NodeKind::kContainer, 0, 0666, {}, {}});
  std::map<u32, const GroupSpec*> spec_of;
  for (const GroupSpec& gs : topology_.groups) {
    const auto* unit = topology_.unit(gs.iommu);
    groups_.push_back(std::make_unique<Group>(gs, *unit));
    spec_of[gs.id] = &gs;
    nodes_.push_back(NodeInfo{"vfio/" + std::to_string(gs.id), NodeKind::kGroup, gs.id,
                              gs.mode.value_or(0600), gs.uid, gs.gid});
  }
  for (const auto& g : groups_)
    for (const auto& d : g->devices()) devices_by_cdev_[d->spec().cdev_index] = d.get();
  for (const auto& [index, d] : devices_by_cdev_) {
    const GroupSpec& gs = *spec_of.at(d->group().id());
    nodes_.push_back(NodeInfo{"vfio/devices/" + d->cdev_name(), NodeKind::kDevice, index,
                              gs.mode.value_or(0600), gs.uid, gs.gid});
  }
  nodes_.push_back(NodeInfo{"iommu", NodeKind::kIommufd, 0, 0660, {}, {}});  // iommu_misc_dev
}

Emulator::~Emulator() = default;

const NodeInfo* Emulator::node(const std::string& path) const {
  for (const NodeInfo& n : nodes_)
    if (n.path == path) return &n;
  return nullptr;
}

Group* Emulator::group_by_id(u32 id) const {
  for (const auto& g : groups_)
    if (g->id() == id) return g.get();
  return nullptr;
}

Device* Emulator::device_by_cdev(u32 index) const {
  auto it = devices_by_cdev_.find(index);
  return it == devices_by_cdev_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<File>> Emulator::open(const NodeInfo& node, const Caller& caller,
                                             u64* conflict) {
  auto log = logger("core");
  // fs.file-max's place: counted first (alloc_empty_file comes before the driver's open), and
  // given back below unless the open succeeds.
  if (!open_files_.add(caller.uid)) {
    if (rejection_log_allowed(*log, caller.pid))
      log->info("{} pid {} open: uid {} has {:#x} files open, the limit (open_files_per_uid): "
                "ENFILE", node.path, caller.pid, caller.uid, open_files_.limit());
    return err(ENFILE);
  }
  struct Counted {
    OpenFileCounts& counts;
    uid_t uid;
    bool kept = false;
    ~Counted() {
      if (!kept) counts.remove(uid);
    }
  } counted{open_files_, caller.uid};
  std::shared_ptr<File> file;
  const u64 id = new_id();
  switch (node.kind) {
    case NodeKind::kContainer:
      file = std::make_shared<ContainerFile>(id, caller.pid, std::make_shared<Container>(id));
      break;
    case NodeKind::kGroup: {
      Group* g = group_by_id(node.index);
      if (g == nullptr) return err(ENODEV);
      std::lock_guard lock(mu);
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
      file = std::make_shared<GroupFile>(id, caller.pid, g);
      g->open_file = file.get();
      break;
    }
    case NodeKind::kDevice: {
      Device* d = device_by_cdev(node.index);
      if (d == nullptr) return err(ENODEV);
      std::lock_guard lock(mu);
      ++d->cdev_opens;
      file = std::make_shared<DeviceFile>(id, caller.pid, d);
      break;
    }
    case NodeKind::kIommufd:
      file = std::make_shared<IommufdFile>(id, caller.pid, make_iommufd_ctx(*this, id));
      break;
  }
  std::lock_guard lock(registry_mu_);
  files_[id] = OpenFile{file, caller.uid};
  counted.kept = true;
  log->debug("{} pid {} open: file {}", node.path, caller.pid, id);
  return file;
}

void Emulator::release(const std::shared_ptr<File>& file) {
  {
    std::lock_guard lock(mu);
    switch (file->kind()) {
      case NodeKind::kContainer:
        break;  // groups keep the container (and its driver) alive until they leave
      case NodeKind::kGroup: {
        Group& g = *static_cast<GroupFile&>(*file).group;
        if (g.device_users != 0)
          g.released_file = file;  // device fds obtained through it hold it: release later
        else
          release_group(*this, g);
        break;
      }
      case NodeKind::kDevice: {
        auto& df = static_cast<DeviceFile&>(*file);
        release_device_file(*this, df);
        --df.device->cdev_opens;
        break;
      }
      case NodeKind::kIommufd:
        release_iommufd_file(*this, static_cast<IommufdFile&>(*file));
        break;
    }
    // Out of the registry before Emulator::mu is given up: whoever takes mu next (the tools'
    // inspect) must not meet a half-released file, such as an iommufd file without a context.
    std::lock_guard registry(registry_mu_);
    auto it = files_.find(file->id());
    if (it != files_.end()) {
      open_files_.remove(it->second.uid);
      files_.erase(it);
    }
  }
  logger("core")->debug("{} file {} released", node_kind_name(file->kind()), file->id());
}

std::shared_ptr<File> Emulator::file(u64 id) const {
  std::lock_guard lock(registry_mu_);
  auto it = files_.find(id);
  return it == files_.end() ? nullptr : it->second.file.lock();
}

std::vector<std::shared_ptr<File>> Emulator::files() const {
  std::lock_guard lock(registry_mu_);
  std::vector<std::shared_ptr<File>> out;
  for (const auto& [id, o] : files_)
    if (auto f = o.file.lock()) out.push_back(f);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a->id() < b->id(); });
  return out;
}

Result<std::shared_ptr<HwDomain>> Emulator::create_domain(const std::shared_ptr<iommu::Unit>& unit,
                                                          std::weak_ptr<std::mutex> owner_mu,
                                                          std::string owner) {
  auto hw = TRY(unit->create_domain());
  auto d = std::make_shared<HwDomain>();
  d->id = new_id();
  d->unit = unit;
  d->hw = std::move(hw);
  d->owner_mu = std::move(owner_mu);
  d->owner = std::move(owner);
  std::lock_guard lock(registry_mu_);
  domains_.erase(std::remove_if(domains_.begin(), domains_.end(),
                                [](const auto& w) { return w.expired(); }),
                 domains_.end());
  domains_.push_back(d);
  return d;
}

std::vector<std::shared_ptr<HwDomain>> Emulator::domains() const {
  std::lock_guard lock(registry_mu_);
  std::vector<std::shared_ptr<HwDomain>> out;
  for (const auto& w : domains_)
    if (auto d = w.lock()) out.push_back(d);
  return out;
}

// ---- dispatch --------------------------------------------------------------------------------

namespace {

Backend backend_of(const IommuDriver& d) {
  switch (d.type()) {
    case uapi::VFIO_TYPE1_IOMMU:
    case uapi::VFIO_TYPE1v2_IOMMU:
      return Backend::kType1;
    default:
      return Backend::kSpapr;
  }
}

// iommufd_fops_ioctl's prologue: the `size` rules of every iommufd command.
Status read_iommufd_struct(IoctlCall& call, const Command& c) {
  // The common case in one access: the whole kernel struct read ahead, holding a `size` no
  // larger than it. Otherwise (a fault on the way, a larger struct, a transport that cannot read
  // ahead) Linux's two steps: get_user(size), then copy_struct_from_user.
  decltype(call.ucmd) ahead;
  const std::size_t got =
      call.mem->read_ahead(call.arg, ahead.data(), std::min<std::size_t>(c.kernel_size, ahead.size()));
  u32 size = 0;
  if (got >= sizeof(size)) {
    std::memcpy(&size, ahead.data(), sizeof(size));
  } else {
    TRY(call.mem->read(call.arg, &size, sizeof(size)));
  }
  if (size < c.min_size)
    return reject(call, EINVAL, "size {:#x} < {:#x}", size, c.min_size);
  call.user_size = size;
  call.ucmd.fill(0);
  if (size <= got) {
    std::memcpy(call.ucmd.data(), ahead.data(), size);
    return call.mem->will_write(call.arg, size);
  }
  // Replies copy back min(size, kernel size) bytes: announced before the read, so the CUSE retry
  // protocol fetches the struct and makes room for the reply in one round.
  TRY(call.mem->will_write(call.arg, std::min<u64>(size, c.kernel_size)));
  TRY(call.mem->read(call.arg, call.ucmd.data(), std::min<u64>(size, c.kernel_size)));
  // copy_struct_from_user: bytes the kernel does not know must be zero.
  u8 chunk[512];
  for (u64 off = c.kernel_size; off < size;) {
    const u64 n = std::min<u64>(sizeof(chunk), size - off);
    TRY(call.mem->read(call.arg + off, chunk, n));
    for (u64 i = 0; i < n; ++i)
      if (chunk[i] != 0)
        return reject(call, E2BIG, "size {:#x}: byte {:#x} past the {:#x}-byte struct is not zero",
                      size, off + i, c.kernel_size);
    off += n;
  }
  return {};
}

}  // namespace

Result<long> Emulator::ioctl(File& file, IoctlCall& call) {
  (void)iommu::TableBudget::take_refusal();  // a refusal seen from here on is this call's
  const Command* c = nullptr;
  Result<long> result = err(ENOTTY);
  try {
    result = dispatch(file, call, &c);
  } catch (const std::bad_alloc&) {
    // Linux's errno for a failed allocation. The handlers undo what they did on every error
    // path, this one included, so the call has changed nothing.
    result = err(ENOMEM);
    try {
      result = reject(call, ENOMEM, "cmd {:#x} arg {:#x}: out of memory", call.cmd, call.arg);
    } catch (const std::bad_alloc&) {
    }
  }
  try {
    account(c, call, result);
  } catch (const std::bad_alloc&) {
    // The call's result stands; only its trace record or log line is lost.
  }
  return result;
}

Result<long> Emulator::dispatch(File& file, IoctlCall& call, const Command** command) {
  const Command*& c = *command;
  Result<long> result = err(ENOTTY);
  switch (file.kind()) {
    case NodeKind::kContainer: {
      c = find_command(NodeKind::kContainer, Backend::kNone, call.cmd);
      if (c != nullptr) {
        call.command = c;
        result = c->handler(*this, file, call);
        break;
      }
      Container& ct = *static_cast<ContainerFile&>(file).container;
      std::lock_guard lock(ct.mu);
      if (!ct.driver) {
        result = reject(call, EINVAL, "cmd {:#x}: no IOMMU driver set (VFIO_SET_IOMMU first)",
                        call.cmd);
        break;
      }
      if (Status st = ct.driver->ioctl_prologue(call); !st) {
        result = Err{st.error()};
        break;
      }
      c = find_command(NodeKind::kContainer, backend_of(*ct.driver), call.cmd);
      if (c != nullptr) {
        call.command = c;
        result = c->handler(*this, file, call);
      }
      break;
    }
    case NodeKind::kGroup:
    case NodeKind::kDevice:
      c = find_command(file.kind(), Backend::kNone, call.cmd);
      if (file.kind() == NodeKind::kDevice && call.cmd != uapi::VFIO_DEVICE_BIND_IOMMUFD &&
          call.cmd != uapi::VFIO_EMU_DEVICE_USE_GROUP) {
        // Before a successful BIND every other ioctl is EINVAL, known or not.
        bool bound;
        {
          std::lock_guard lock(mu);
          bound = static_cast<DeviceFile&>(file).access_granted();
        }
        if (!bound) {
          call.command = c;
          result = reject(call, EINVAL, "cmd {:#x}: device not bound (VFIO_DEVICE_BIND_IOMMUFD "
                          "first)", call.cmd);
          break;
        }
      }
      if (c != nullptr) {
        call.command = c;
        result = c->handler(*this, file, call);
      }
      break;
    case NodeKind::kIommufd: {
      const u32 nr = call.cmd & 0xff;
      if (nr < uapi::IOMMUFD_CMD_BASE) {  // the VFIO container compatibility layer
        c = find_command(NodeKind::kIommufd, Backend::kIommufdCompat, call.cmd);
        if (c != nullptr) {
          call.command = c;
          result = c->handler(*this, file, call);
        }
        break;
      }
      c = find_command(NodeKind::kIommufd, Backend::kNone, call.cmd);
      if (c == nullptr) break;
      call.command = c;
      Status st = read_iommufd_struct(call, *c);
      if (!st) {
        result = Err{st.error()};
        break;
      }
      result = c->handler(*this, file, call);
      break;
    }
  }
  return result;
}

void Emulator::account(const Command* c, IoctlCall& call, const Result<long>& result) {
  if (!result && is_internal_code(result.error())) return;  // the same ioctl comes again
  auto log = logger("core");
  if (!result && result.error() == ENOTTY && c == nullptr &&
      rejection_log_allowed(*log, call.caller.pid))
    log->info("{} pid {} ioctl {:#x} arg {:#x}: unknown command: ENOTTY", call.node_name,
              call.caller.pid, call.cmd, call.arg);
  const auto all = all_commands();
  CommandCounters::Count& count =
      c != nullptr && static_cast<size_t>(c - all.data()) < CommandCounters::kMaxCommands
          ? counters_.by_command[static_cast<size_t>(c - all.data())]
          : counters_.unknown;
  count.calls.fetch_add(1, std::memory_order_relaxed);
  if (!result) count.errors.fetch_add(1, std::memory_order_relaxed);
  const long value = result ? *result : -static_cast<long>(result.error());
  if (log->should_log(spdlog::level::debug))
    log->debug("{} pid {} {} {}: {}", call.node_name, call.caller.pid,
               c ? c->name : std::string_view("ioctl"), call.detail,
               result ? fmt::format("{}", value)
                      : fmt::format("{} ({})", errno_name(result.error()), result.error()));
  TraceRecord r;
  // Copied: the caller may still want the decoded operands.
  r.time = now_seconds();
  r.pid = call.caller.pid;
  r.tid = call.caller.tid;
  r.node.assign(call.node_name);
  r.command = c ? c->name : std::string_view();  // the table's names are static
  r.cmd = call.cmd;
  r.arg = call.arg;
  r.detail.assign(call.detail);
  r.result = value;
  trace_.record(r);
}

Result<u64> Emulator::read(File& file, u64 offset, void* buf, u64 len) {
  if (file.kind() != NodeKind::kDevice) return err(EINVAL);
  return device_read(*this, static_cast<DeviceFile&>(file), offset, buf, len);
}

Result<u64> Emulator::write(File& file, u64 offset, const void* buf, u64 len) {
  if (file.kind() != NodeKind::kDevice) return err(EINVAL);
  return device_write(*this, static_cast<DeviceFile&>(file), offset, buf, len);
}

}  // namespace vfio_emu::core
