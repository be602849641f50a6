#include "core/inspect/vtd_debugfs.h"

#include <cstdio>
#include <new>

#include "base/vtd_debugfs_format.h"
#include "core/device_dma.h"
#include "core/inspect/leaf_runs.h"
#include "iommu/vtd/vtd.h"

namespace vfio_emu::core::inspect {

bool behind_vtd(const Device& device) {
  return !device.group().noiommu() && device.group().model() == iommu::Model::kVtd;
}

Result<std::string> domain_translation_struct(Emulator& emu, Device& device) {
  try {
    const std::shared_ptr<HwDomain> d = current_domain(emu, device);
    if (!d || d->unit->model() != iommu::Model::kVtd || d->hw->levels() == 0) return std::string();
    auto mu = d->owner_mu.lock();
    if (!mu) return std::string();  // its owner is gone: the domain is being freed
    unsigned seg = 0, bus = 0, slot = 0, fn = 0;
    std::sscanf(device.spec().bdf.c_str(), "%x:%x:%x.%x", &seg, &bus, &slot, &fn);
    std::lock_guard lock(*mu);
    const auto& vtd = static_cast<const iommu::vtd::VtdDomain&>(*d->hw);
    std::string text = vtd_debugfs_device_line(seg, bus, slot, fn, vtd.root_table());
    text += vtd_debugfs_header();
    walk_until(*d->hw, 0, kU64Max, [&](const iommu::LeafView& l) {
      u64 path[6] = {};
      for (int i = 0; i < l.top_level && l.top_level - i <= 5; ++i)
        path[l.top_level - i] = l.path[static_cast<size_t>(i)];
      text += vtd_debugfs_row(l.iova, path);
      return true;
    });
    return text;
  } catch (const std::bad_alloc&) {
    return err(ENOMEM);
  }
}

}  // namespace vfio_emu::core::inspect
