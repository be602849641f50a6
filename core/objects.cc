#include "core/objects.h"

#include <cstring>
#include <stdexcept>

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
  auto m = devices::make_device_model(spec_.model,
                                      devices::PciIds{spec_.vendor, spec_.device, spec_.class_code});
  // The topology parser accepts only known models; a spec built in code names one too.
  if (!m) throw std::invalid_argument("device " + spec_.bdf + ": unknown model " + spec_.model);
  model = m.take();
  model->reset();
  reset_regions();
}

void Device::reset_regions() {
  config.assign(model->config_size(), 0);
  config_write_mask.assign(model->config_size(), 0);
  model->power_on_config(config, config_write_mask);
}

void Device::reset() { model->reset(); }

Group::Group(const GroupSpec& spec, std::shared_ptr<iommu::Unit> unit)
    : id_(spec.id), unit_(std::move(unit)) {
  for (const DeviceSpec& d : spec.devices) devices_.push_back(std::make_unique<Device>(d, this));
}

std::string Device::cdev_name() const {
  return (group_->noiommu() ? "noiommu-vfio" : "vfio") + std::to_string(spec_.cdev_index);
}

std::string Group::node_path() const {
  return (noiommu() ? "vfio/noiommu-" : "vfio/") + std::to_string(id_);
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
