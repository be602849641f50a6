#include "core/inspect/world.h"

#include "core/device.h"
#include "core/iommufd/ctx.h"
#include "core/iommufd/iommufd.h"

namespace vfio_emu::core::inspect {

World gather(Emulator& emu) {
  World w;
  w.files = emu.files();
  for (const auto& f : w.files) {
    if (f->kind() == NodeKind::kContainer) {
      auto& c = static_cast<ContainerFile&>(*f).container;
      w.containers[c->id()] = c;
    } else if (f->kind() == NodeKind::kIommufd) {
      auto& ctx = static_cast<IommufdFile&>(*f).ctx;
      w.contexts[ctx->id] = ctx;
    } else if (f->kind() == NodeKind::kDevice) {
      auto& df = static_cast<DeviceFile&>(*f);
      if (df.ictx) w.contexts[df.ictx->id] = df.ictx;
    }
  }
  for (const auto& g : emu.groups()) {
    if (g->container) w.containers[g->container->id()] = g->container;
    if (g->ictx) w.contexts[g->ictx->id] = g->ictx;
  }
  return w;
}

std::shared_ptr<HwDomain> find_domain(Emulator& emu, u64 id) {
  for (auto& d : emu.domains())
    if (d->id == id) return d;
  return nullptr;
}

}  // namespace vfio_emu::core::inspect
