#include "core/emulator.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "core/cleanup.h"
#include "core/log.h"
#include "core/node_type.h"
#include "core/reject.h"
#include "iommu/table_memory.h"

namespace vfio_emu::core {

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
  omit_noiommu_devices_unless_enabled();
  nodes_.push_back(NodeInfo{"vfio/vfio", NodeKind::kContainer, 0, 0666, {}, {}});
  std::map<u32, const GroupSpec*> spec_of;
  auto log = logger("core");
  for (const GroupSpec& gs : topology_.groups) {
    groups_.push_back(std::make_unique<Group>(
        gs, gs.noiommu ? std::shared_ptr<iommu::Unit>() : *topology_.unit(gs.iommu)));
    spec_of[gs.id] = &gs;
    nodes_.push_back(NodeInfo{groups_.back()->node_path(), NodeKind::kGroup, gs.id,
                              gs.mode.value_or(0600), gs.uid, gs.gid});
    // vfio_group_find_or_alloc's taint and warning (the emulated kernel's; the host's is untouched).
    if (gs.noiommu)
      log->warn("{}: Adding kernel taint for vfio-noiommu group on device (no-IOMMU group {}: "
                "no isolation, no DMA translation)", gs.devices.front().bdf, gs.id);
  }
  for (const auto& g : groups_)
    for (const auto& d : g->devices()) devices_by_cdev_[d->spec().cdev_index] = d.get();
  for (const auto& [index, d] : devices_by_cdev_) {
    const GroupSpec& gs = *spec_of.at(d->group().id());
    nodes_.push_back(NodeInfo{"vfio/devices/" + d->cdev_name(), NodeKind::kDevice, index,
                              gs.mode.value_or(0600), gs.uid, gs.gid});
  }
  nodes_.push_back(NodeInfo{"iommu", NodeKind::kIommufd, 0, 0660, {}, {}});  // iommu_misc_dev
  connect_device_models(*this, true);
}

Emulator::~Emulator() { connect_device_models(*this, false); }

// vfio_group_find_or_alloc without vfio_noiommu: a device with no IOMMU group gets none, and
// vfio-pci's probe fails (EINVAL), so it has no group, no cdev and no device index; the cdev
// numbers of the devices after it close up.
void Emulator::omit_noiommu_devices_unless_enabled() {
  if (topology_.limits.enable_unsafe_noiommu_mode) return;
  auto& groups = topology_.groups;
  for (const GroupSpec& g : groups)
    if (g.noiommu)
      logger("core")->info("{}: no IOMMU, and enable_unsafe_noiommu_mode is off: not bound to "
                           "vfio-pci (no group, no cdev)", g.devices.front().bdf);
  groups.erase(std::remove_if(groups.begin(), groups.end(),
                              [](const GroupSpec& g) { return g.noiommu; }),
               groups.end());
  std::vector<DeviceSpec*> by_index;
  for (GroupSpec& g : groups)
    for (DeviceSpec& d : g.devices) by_index.push_back(&d);
  std::sort(by_index.begin(), by_index.end(),
            [](const DeviceSpec* a, const DeviceSpec* b) { return a->cdev_index < b->cdev_index; });
  for (size_t i = 0; i < by_index.size(); ++i) by_index[i]->cdev_index = static_cast<u32>(i);
}

const NodeType& node_type(NodeKind kind) {
  switch (kind) {
    case NodeKind::kContainer: return container_node_type();
    case NodeKind::kGroup: return group_node_type();
    case NodeKind::kDevice: return device_node_type();
    case NodeKind::kIommufd: return iommufd_node_type();
  }
  return container_node_type();  // not reached: every kind is above
}

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
  Cleanup uncount([&] { open_files_.remove(caller.uid); });
  const u64 id = new_id();
  std::shared_ptr<File> file = TRY(node_type(node.kind).open(*this, node, id, caller, conflict));
  std::lock_guard lock(registry_mu_);
  files_[id] = OpenFile{file, caller.uid};
  uncount.cancel();
  log->debug("{} pid {} open: file {}", node.path, caller.pid, id);
  return file;
}

void Emulator::release(const std::shared_ptr<File>& file) {
  {
    std::lock_guard lock(mu);
    node_type(file->kind()).release(*this, file);
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

Result<u64> Emulator::read(File& file, u64 offset, void* buf, u64 len) {
  return node_type(file.kind()).read(*this, file, offset, buf, len);
}

Result<u64> Emulator::write(File& file, u64 offset, const void* buf, u64 len) {
  return node_type(file.kind()).write(*this, file, offset, buf, len);
}

}  // namespace vfio_emu::core
