// /dev/vfio/vfio: GET_API_VERSION, CHECK_EXTENSION, SET_IOMMU, and attaching groups to a
// container (drivers/vfio/container.c). Every other container ioctl goes to the IOMMU driver
// (see Emulator::ioctl); without one it is EINVAL.
#include "core/container.h"

#include <linux/capability.h>

#include <algorithm>

#include "core/cleanup.h"
#include "core/command.h"
#include "core/emulator.h"
#include "core/node_type.h"
#include "core/noiommu.h"
#include "core/log.h"
#include "core/reject.h"
#include "core/spapr.h"
#include "core/type1.h"
#include "core/uapi/vfio.h"
#include "core/vfio_iommu_rules.h"

namespace vfio_emu::core {

using namespace uapi;

namespace container_ioctl {

// The IOMMU driver families; groups of a family's models can share a container. kNoIommu is
// vfio-noiommu, the driver of no-IOMMU groups (always registered: CONFIG_VFIO_NOIOMMU).
enum class Family : u8 { kType1, kSpapr, kNoIommu };

bool family_serves(Family f, const Group& g) {
  if (g.noiommu()) return f == Family::kNoIommu;
  const iommu::Model m = g.model();
  switch (f) {
    case Family::kType1: return m == iommu::Model::kVtd || m == iommu::Model::kNop;
    case Family::kSpapr: return m == iommu::Model::kTce;
    case Family::kNoIommu: return false;
  }
  return false;
}

bool family_claims(Family f, u32 type) {
  switch (f) {
    case Family::kType1: return type == VFIO_TYPE1_IOMMU || type == VFIO_TYPE1v2_IOMMU;
    case Family::kSpapr: return type == VFIO_SPAPR_TCE_IOMMU || type == VFIO_SPAPR_TCE_v2_IOMMU;
    case Family::kNoIommu: return type == VFIO_NOIOMMU_IOMMU;
  }
  return false;
}

long family_check_extension_unset(const Emulator& emu, Family f, u32 ext) {
  switch (f) {
    case Family::kSpapr: return spapr_check_extension_unset(ext);
    case Family::kNoIommu:
      return noiommu_check_extension(emu.limits().enable_unsafe_noiommu_mode, ext);
    case Family::kType1:
      // vfio_iommu_type1_check_extension with no iommu_data: DMA_CC and UPDATE_VADDR need a
      // set-up container.
      return type1_check_extension(ext, false, false);
  }
  return 0;
}

// Which drivers may serve the container: Linux walks every registered driver the container may
// use (vfio_iommu_driver_allowed: a container of no-IOMMU groups only vfio-noiommu, any other
// container any driver but vfio-noiommu). This machine has both VT-d and POWER units, so a
// driver is allowed when it can serve every group already attached (or any unit, with no group
// yet); vfio-noiommu answers an empty container too.
bool family_allowed(const Emulator& emu, const Container& c, Family f) {
  if (!c.groups.empty())
    return std::all_of(c.groups.begin(), c.groups.end(),
                       [&](const Group* g) { return family_serves(f, *g); });
  if (f == Family::kNoIommu) return true;
  return std::any_of(emu.topology().units.begin(), emu.topology().units.end(), [&](const auto& u) {
    return f == Family::kType1 ? (u->model() == iommu::Model::kVtd || u->model() == iommu::Model::kNop)
                               : u->model() == iommu::Model::kTce;
  });
}

// The drivers' registration order (vfio-noiommu registers with vfio itself, before the IOMMU
// modules load); their CHECK_EXTENSION answers are disjoint, so only SET_IOMMU's errno could
// tell the order, and each type is claimed by one family.
constexpr Family kFamilies[] = {Family::kNoIommu, Family::kType1, Family::kSpapr};

std::unique_ptr<IommuDriver> make_driver(Emulator& emu, Container& c, Family f, u32 type) {
  switch (f) {
    case Family::kType1: return std::make_unique<Type1Driver>(emu, c, type);
    case Family::kSpapr: return make_spapr_driver(emu, c, type);
    case Family::kNoIommu: return std::make_unique<NoIommuDriver>();
  }
  return nullptr;
}

Result<long> get_api_version(Emulator&, File&, IoctlCall&) { return long{VFIO_API_VERSION}; }

Result<long> check_extension(Emulator& emu, File& file, IoctlCall& call) {
  Container& c = *static_cast<ContainerFile&>(file).container;
  const u32 ext = static_cast<u32>(call.arg);
  call.detail = fmt::format("ext={}", ext);
  std::lock_guard lock(emu.mu);
  if (c.driver) {
    std::lock_guard clock(c.mu);
    return c.driver->check_extension(ext);
  }
  for (Family f : kFamilies) {
    if (!family_allowed(emu, c, f)) continue;
    const long r = family_check_extension_unset(emu, f, ext);
    if (r > 0) return r;
  }
  return long{0};
}

Result<long> set_iommu(Emulator& emu, File& file, IoctlCall& call) {
  Container& c = *static_cast<ContainerFile&>(file).container;
  const u32 type = static_cast<u32>(call.arg);
  call.detail = fmt::format("type={}", type);
  std::lock_guard lock(emu.mu);
  if (c.groups.empty() || c.driver)
    return reject(call, EINVAL, "type {}: {}", type,
                  c.driver ? "an IOMMU driver is already set" : "no group in the container");
  int ret = ENODEV;  // no driver claims the type
  for (Family f : kFamilies) {
    if (!family_allowed(emu, c, f) || !family_claims(f, type)) continue;
    // vfio_noiommu_open: CAP_SYS_RAWIO, or EPERM (and the next driver is tried).
    if (f == Family::kNoIommu && !call.env->capable(CAP_SYS_RAWIO)) {
      reject(call, EPERM, "type {}: vfio-noiommu needs CAP_SYS_RAWIO", type);
      ret = EPERM;
      continue;
    }
    std::unique_ptr<IommuDriver> driver = make_driver(emu, c, f, type);
    std::lock_guard clock(c.mu);
    size_t attached = 0;
    Cleanup detach([&] {
      for (size_t i = 0; i < attached; ++i) driver->detach_group(*c.groups[i]);
    });
    Status st;
    for (Group* g : c.groups) {
      st = driver->attach_group(*g, call);
      if (!st) break;
      ++attached;
    }
    if (!st) {
      ret = st.error();
      continue;
    }
    detach.cancel();
    c.driver = std::move(driver);
    return long{0};
  }
  if (ret == ENODEV)
    return reject(call, ENODEV, "type {}: no IOMMU driver can serve the container's groups "
                  "(IOMMU model does not support this type)", type);
  if (ret == EPERM) return Err{EPERM};  // logged above
  return reject(call, ret, "type {}: attaching the container's groups failed", type);
}

}  // namespace container_ioctl

namespace {

Backend backend_of(const IommuDriver& d) {
  switch (d.type()) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
      return Backend::kType1;
    case VFIO_NOIOMMU_IOMMU:
      return Backend::kNone;  // not reached: its prologue refuses every ioctl
    default:
      return Backend::kSpapr;
  }
}

class ContainerNodeType final : public NodeType {
 public:
  Result<std::shared_ptr<File>> open(Emulator&, const NodeInfo&, u64 id, const Caller& caller,
                                     u64*) const override {
    return std::shared_ptr<File>(
        std::make_shared<ContainerFile>(id, caller.pid, std::make_shared<Container>(id)));
  }
  void release(Emulator&, const std::shared_ptr<File>&) const override {
    // Groups keep the container (and its driver) alive until they leave.
  }
  // The container's own commands, or else its IOMMU driver's (under the container's mu, after
  // the driver's own prologue); without a driver every other command is EINVAL.
  Result<Route> route(Emulator&, File& file, IoctlCall& call) const override {
    Route r;
    if (find_command(NodeKind::kContainer, Backend::kNone, call.cmd) != nullptr) return r;
    Container& ct = *static_cast<ContainerFile&>(file).container;
    r.lock = std::unique_lock(ct.mu);
    if (!ct.driver)
      return reject(call, EINVAL, "cmd {:#x}: no IOMMU driver set (VFIO_SET_IOMMU first)",
                    call.cmd);
    TRY(ct.driver->ioctl_prologue(call));
    r.backend = backend_of(*ct.driver);
    return r;
  }
};

}  // namespace

const NodeType& container_node_type() {
  static const ContainerNodeType type;
  return type;
}

Status container_attach_group(Emulator& emu, const std::shared_ptr<Container>& cp, Group& g,
                              IoctlCall& call) {
  (void)emu;
  Container& c = *cp;
  // vfio_container_attach_group: a no-IOMMU group needs CAP_SYS_RAWIO, before anything else.
  if (g.noiommu() && !call.env->capable(CAP_SYS_RAWIO))
    return reject(call, EPERM, "no-IOMMU group {} needs CAP_SYS_RAWIO", g.id());
  // "Real groups and fake groups cannot mix": no-IOMMU groups share a container only with each
  // other.
  if (!c.groups.empty() && c.groups.front()->noiommu() != g.noiommu())
    return reject(call, EPERM, "group {} ({}) cannot join container {}, which holds {} groups",
                  g.id(), g.noiommu() ? "no-IOMMU" : "IOMMU", c.id(),
                  g.noiommu() ? "IOMMU" : "no-IOMMU");
  // A container holds groups of one IOMMU family only, as Linux keeps noiommu and IOMMU groups
  // apart: the check (and its EPERM) comes before any driver is asked.
  if (!c.groups.empty() && !g.noiommu()) {
    const iommu::Model have = c.groups.front()->model();
    const bool compatible = (have == iommu::Model::kTce) == (g.model() == iommu::Model::kTce);
    if (!compatible)
      return reject(call, EPERM, "group {} ({} unit {}) cannot join container {}, which holds "
                    "an incompatible IOMMU ({} groups)", g.id(), iommu::model_name(g.model()),
                    g.unit()->name(), c.id(), iommu::model_name(have));
  }
  // iommu_group_claim_dma_owner: a device bound through its cdev owns the group's DMA.
  for (const auto& d : g.devices())
    if (d->bound_file != nullptr)
      return reject(call, EPERM, "group {}: device {} is bound to an iommufd", g.id(),
                    d->spec().bdf);
  c.groups.reserve(c.groups.size() + 1);  // so that nothing can fail after the driver's attach
  if (c.driver) {
    std::lock_guard clock(c.mu);
    Status st = c.driver->attach_group(g, call);
    if (!st) return reject(call, st.error(), "group {}: {} driver refused it", g.id(),
                           c.driver->name());
  }
  c.groups.push_back(&g);
  g.container = cp;
  return {};
}

void container_detach_group(Emulator& emu, Group& g) {
  (void)emu;
  std::shared_ptr<Container> cp = std::move(g.container);
  Container& c = *cp;
  std::lock_guard clock(c.mu);
  if (c.driver) c.driver->detach_group(g);
  c.groups.erase(std::remove(c.groups.begin(), c.groups.end(), &g), c.groups.end());
  // The last group takes the driver, and every mapping, with it.
  if (c.groups.empty()) c.driver.reset();
}

}  // namespace vfio_emu::core
