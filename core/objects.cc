#include "core/objects.h"

#include <cstring>

namespace vfio_emu::core {

std::string_view node_kind_name(NodeKind k) {
  switch (k) {
    case NodeKind::kContainer: return "container";
    case NodeKind::kGroup: return "group";
    case NodeKind::kDevice: return "device";
    case NodeKind::kIommufd: return "iommufd";
  }
  return "?";
}

Device::Device(const DeviceSpec& spec, Group* group) : spec_(spec), group_(group) {
  reset_regions();
}

void Device::reset_regions() {
  // A type-0 PCI header with one 16 KiB 32-bit memory BAR (BAR0), as a minimal PCI function.
  config.fill(0);
  config_write_mask.fill(0);
  auto put16 = [&](size_t off, u16 v) { std::memcpy(&config[off], &v, 2); };
  auto put32 = [&](size_t off, u32 v) { std::memcpy(&config[off], &v, 4); };
  put16(0x00, spec_.vendor);
  put16(0x02, spec_.device);
  config[0x08] = 0x01;                                     // revision
  config[0x09] = static_cast<u8>(spec_.class_code);        // prog-if
  config[0x0a] = static_cast<u8>(spec_.class_code >> 8);   // subclass
  config[0x0b] = static_cast<u8>(spec_.class_code >> 16);  // class
  config[0x0e] = 0x00;                                     // header type 0
  put32(0x10, 0);                                          // BAR0: 32-bit memory at 0
  put16(0x2c, spec_.vendor);                               // subsystem vendor
  put16(0x2e, spec_.device);
  config[0x3d] = 0x01;                                     // INTA#
  // Writable: command (memory, bus master, INTx disable), BAR0 address bits, interrupt line.
  put16(0x04, 0);
  config_write_mask[0x04] = 0x06;                          // memory space, bus master
  config_write_mask[0x05] = 0x04;                          // INTx disable
  const u32 bar_mask = ~static_cast<u32>(kBar0Size - 1);
  std::memcpy(&config_write_mask[0x10], &bar_mask, 4);
  config_write_mask[0x3c] = 0xff;
  bar0.assign(kBar0Size, 0);
}

Group::Group(const GroupSpec& spec, std::shared_ptr<iommu::Unit> unit)
    : id_(spec.id), unit_(std::move(unit)) {
  for (const DeviceSpec& d : spec.devices) devices_.push_back(std::make_unique<Device>(d, this));
}

bool group_frozen(const Group& g) {
  if (!g.container) return false;
  std::lock_guard lock(g.container->mu);
  return g.container->driver && g.container->driver->group_frozen(g);
}

Device* Group::device_by_name(const std::string& bdf) const {
  for (const auto& d : devices_)
    if (d->spec().bdf == bdf) return d.get();
  return nullptr;
}

}  // namespace vfio_emu::core
