// The sPAPR TCE backend (v1 and v2) and VFIO_EEH_PE_OP: every errno condition of
// shared/spec/linux-vfio-uapi.md §4 in Linux's order where the order is observable, the vfio.rst
// flows, translations through the TCE tables, locked memory and the EEH state machine.
// Built-in topology: group 3 on TCE unit phb0 (1 GiB 32-bit window at 0, DDW from 2^59 with
// 4K/64K/2M/1G pages, 2 windows, 5 levels), group 1 on VT-d dmar0.
#include <catch2/catch.hpp>

#include <linux/capability.h>
#include <sys/mman.h>

#include <cstring>
#include <string>

#include "core/spapr.h"
#include "core/uapi/vfio.h"
#include "iommu/tce/tce.h"
#include "tests/unit/core_harness.h"

using namespace vfio_emu;
using namespace vfio_emu::core;
using namespace vfio_emu::uapi;
using vfio_emu::test::Buffer;
using vfio_emu::test::Harness;

namespace {

constexpr u64 K4 = 4096;
constexpr u64 K64 = u64{1} << 16;
constexpr u64 M1 = u64{1} << 20;
constexpr u64 M2 = u64{1} << 21;
constexpr u64 M4 = u64{1} << 22;
constexpr u64 G1 = u64{1} << 30;
constexpr u64 kDdwStart = u64{1} << 59;
constexpr u32 RW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
// The default window's TCE table as Linux charges it: 2^18 4K entries of 8 bytes, twice (the
// hardware table and its userspace-address copy).
constexpr u64 kDefaultTableCharge = 2 * ((G1 / K4) * 8);

// Two groups on phb0, one on phb1, one on a PHB without dynamic windows, one on VT-d.
constexpr const char* kTwoPhbs = R"(
[[iommu]]
name = "phb0"
model = "tce"
[[iommu]]
name = "phb1"
model = "tce"
[[iommu]]
name = "phb2"
model = "tce"
max_windows = 1
[[iommu]]
name = "dmar0"
model = "vtd"
[[group]]
id = 1
iommu = "phb0"
devices = ["0001:00:00.0"]
[[group]]
id = 2
iommu = "phb0"
devices = ["0001:00:01.0"]
[[group]]
id = 3
iommu = "phb1"
devices = ["0002:00:00.0"]
[[group]]
id = 4
iommu = "phb2"
devices = ["0003:00:00.0"]
[[group]]
id = 5
iommu = "dmar0"
devices = ["0000:00:05.0"]
)";

Topology parse_or_fail(const std::string& text) {
  std::string error;
  auto t = Topology::parse(text, &error);
  INFO(error);
  REQUIRE(t.has_value());
  return std::move(*t);
}

// One PHB whose dynamic windows start 1 GiB below the top of the 64-bit bus space. TOML integers
// stop at 2^63-1, so this one is built in code.
Topology top_of_bus() {
  Topology t;
  iommu::tce::TceConfig cfg;
  cfg.name = "phbtop";
  cfg.ddw_start = 0 - G1;
  t.units.push_back(iommu::tce::TceUnit::create(cfg).take());
  GroupSpec g;
  g.id = 7;
  g.iommu = "phbtop";
  DeviceSpec d;
  d.bdf = "0007:00:00.0";
  g.devices.push_back(d);
  t.groups.push_back(g);
  return t;
}

int set_container(Harness& h, int group, int container) {
  return h.fails(group, VFIO_GROUP_SET_CONTAINER, &container);
}

// A container holding `group` with `type` set; returns the container fd (and the group's).
int setup(Harness& h, const std::string& group, u32 type, int* group_fd = nullptr) {
  const int c = h.open("vfio/vfio");
  const int g = h.open(group);
  REQUIRE(g >= 0);
  REQUIRE(set_container(h, g, c) == 0);
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, type) == 0);
  if (group_fd) *group_fd = g;
  return c;
}

// The errno of a call that returned -1, 0 for any other result (read at once, before anything
// else can change errno).
int err_of(long result) { return result == -1 ? errno : 0; }

SpaprDriver& driver(Harness& h, int c) {
  auto& cf = static_cast<ContainerFile&>(*h.file(c));
  REQUIRE(cf.container->driver);
  return static_cast<SpaprDriver&>(*cf.container->driver);
}

// Whether the group's PE holds its devices frozen, asked as device.cc asks (Emulator::mu held).
bool frozen(Harness& h, const Group& g) {
  std::lock_guard lock(h.emu.mu);
  return group_frozen(g);
}

// MAP_DMA's raw result: 0, the quirky 1, or -1 with errno.
long map_raw(Harness& h, int c, u64 vaddr, u64 iova, u64 size, u32 flags = RW) {
  vfio_iommu_type1_dma_map m{sizeof(m), flags, vaddr, iova, size};
  errno = 0;
  return h.ioctl(c, VFIO_IOMMU_MAP_DMA, &m);
}
int map(Harness& h, int c, u64 vaddr, u64 iova, u64 size, u32 flags = RW) {
  return map_raw(h, c, vaddr, iova, size, flags) == -1 ? errno : 0;
}

vfio_iommu_type1_dma_unmap unmap_arg(u64 iova, u64 size, u32 flags = 0) {
  vfio_iommu_type1_dma_unmap u{};
  u.argsz = sizeof(u);
  u.flags = flags;
  u.iova = iova;
  u.size = size;
  return u;
}
long unmap_raw(Harness& h, int c, u64 iova, u64 size, u32 flags = 0) {
  auto u = unmap_arg(iova, size, flags);
  errno = 0;
  return h.ioctl(c, VFIO_IOMMU_UNMAP_DMA, &u);
}
int unmap(Harness& h, int c, u64 iova, u64 size, u32 flags = 0) {
  return unmap_raw(h, c, iova, size, flags) == -1 ? errno : 0;
}

long reg_raw(Harness& h, int c, u64 vaddr, u64 size, u32 cmd = VFIO_IOMMU_SPAPR_REGISTER_MEMORY) {
  vfio_iommu_spapr_register_memory r{sizeof(r), 0, vaddr, size};
  errno = 0;
  return h.ioctl(c, cmd, &r);
}
int reg(Harness& h, int c, u64 vaddr, u64 size) {
  return reg_raw(h, c, vaddr, size) == -1 ? errno : 0;
}
int unreg(Harness& h, int c, u64 vaddr, u64 size) {
  return reg_raw(h, c, vaddr, size, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY) == -1 ? errno : 0;
}

int create(Harness& h, int c, u32 page_shift, u64 window_size, u32 levels, u64* start = nullptr) {
  vfio_iommu_spapr_tce_create cr{};
  cr.argsz = sizeof(cr);
  cr.page_shift = page_shift;
  cr.window_size = window_size;
  cr.levels = levels;
  cr.start_addr = 0x5a5a5a5a5a5a5a5a;
  const int e = h.fails(c, VFIO_IOMMU_SPAPR_TCE_CREATE, &cr);
  if (start) *start = cr.start_addr;
  return e;
}

int remove(Harness& h, int c, u64 start) {
  vfio_iommu_spapr_tce_remove r{sizeof(r), 0, start};
  return h.fails(c, VFIO_IOMMU_SPAPR_TCE_REMOVE, &r);
}

// VFIO_EEH_PE_OP's raw result (GET_STATE returns the state).
long eeh(Harness& h, int c, u32 op) {
  vfio_eeh_pe_op o{};
  o.argsz = sizeof(o);
  o.op = op;
  errno = 0;
  return h.ioctl(c, VFIO_EEH_PE_OP, &o);
}

long inject(Harness& h, int c, u32 type, u32 func, u32 argsz = sizeof(vfio_eeh_pe_op)) {
  vfio_eeh_pe_op o{};
  o.argsz = argsz;
  o.op = VFIO_EEH_PE_INJECT_ERR;
  o.err.type = type;
  o.err.func = func;
  errno = 0;
  return h.ioctl(c, VFIO_EEH_PE_OP, &o);
}

iommu::Translation translate(Harness& h, u64 iova, iommu::Access a = iommu::Access::kRead) {
  auto doms = h.emu.domains();
  REQUIRE(doms.size() == 1);
  return doms[0]->hw->translate(iova, a);
}

// The TCE (CPU byte order) the walk read for `iova`, 0 if the walk did not reach one.
u64 raw_tce(Harness& h, u64 iova) {
  const auto t = translate(h, iova);
  if (t.nsteps == 0 || t.steps[t.nsteps - 1].level != 1) return 0;
  return t.steps[t.nsteps - 1].entry;
}

u64 locked(Harness& h) { return h.emu.locked_memory().charged(h.caller.pid); }

}  // namespace

// ---- extensions and SET_IOMMU ----------------------------------------------------------------

TEST_CASE("spapr: CHECK_EXTENSION before and after SET_IOMMU", "[spapr]") {
  Harness h;
  const int c = h.open("vfio/vfio");
  const int g = h.open("vfio/3");
  REQUIRE(set_container(h, g, c) == 0);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_IOMMU) == 1);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU) == 1);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_EEH) == 1);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 0);  // not for a TCE group
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU) == 0);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_IOMMU) == 1);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU) == 1);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_EEH) == 1);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) == 0);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL) == 0);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU) == 0);
  CHECK(driver(h, c).type() == VFIO_SPAPR_TCE_v2_IOMMU);
  CHECK(spapr_check_extension_unset(VFIO_NOIOMMU_IOMMU) == 0);
}

TEST_CASE("spapr: SET_IOMMU needs a group behind a TCE unit", "[spapr][bind]") {
  Harness h;
  SECTION("type1 on the TCE group") {
    const int c = h.open("vfio/vfio");
    REQUIRE(set_container(h, h.open("vfio/3"), c) == 0);
    CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) == ENODEV);
    CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == ENODEV);
    CHECK(h.fails(c, VFIO_SET_IOMMU, 42) == ENODEV);
    CHECK(h.ioctl(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU) == 0);
    CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU) == EINVAL);  // already set
  }
  SECTION("sPAPR on a VT-d group") {
    const int c = h.open("vfio/vfio");
    REQUIRE(set_container(h, h.open("vfio/1"), c) == 0);
    CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU) == ENODEV);
    CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU) == ENODEV);
    CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_EEH) == 0);
  }
  SECTION("sPAPR ioctls before SET_IOMMU are EINVAL") {
    const int c = h.open("vfio/vfio");
    REQUIRE(set_container(h, h.open("vfio/3"), c) == 0);
    CHECK(h.fails(c, VFIO_IOMMU_ENABLE) == EINVAL);
    CHECK(h.fails(c, VFIO_EEH_PE_OP, u64{0}) == EINVAL);
  }
}

TEST_CASE("spapr: the container's domain is registered for the tools", "[spapr][bind]") {
  Harness h;
  const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_v2_IOMMU);
  auto doms = h.emu.domains();
  REQUIRE(doms.size() == 1);
  const auto id = static_cast<ContainerFile&>(*h.file(c)).container->id();
  CHECK(doms[0]->owner == "container " + std::to_string(id));
  CHECK(doms[0]->unit->name() == "phb0");
  CHECK(doms[0]->hw->model() == iommu::Model::kTce);
  CHECK(driver(h, c).domain() == doms[0]);
  CHECK(driver(h, c).domains().size() == 1);
  CHECK(driver(h, c).groups().size() == 1);
  CHECK(driver(h, c).default_window_pending());
  CHECK(driver(h, c).windows().empty());
}

TEST_CASE("spapr: attach_group errors", "[spapr][bind]") {
  Harness h(parse_or_fail(kTwoPhbs));
  SECTION("v1 takes one group: a second is EBUSY, at SET_IOMMU or at SET_CONTAINER") {
    const int c = h.open("vfio/vfio");
    const int g1 = h.open("vfio/1");
    const int g2 = h.open("vfio/2");
    REQUIRE(set_container(h, g1, c) == 0);
    REQUIRE(set_container(h, g2, c) == 0);
    CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU) == EBUSY);
    CHECK(h.emu.domains().empty());  // the first group's attach was undone
    REQUIRE(h.ioctl(g2, VFIO_GROUP_UNSET_CONTAINER) == 0);
    REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU) == 0);
    CHECK(set_container(h, g2, c) == EBUSY);
  }
  SECTION("v2 shares one domain among the groups of a unit") {
    const int c = setup(h, "vfio/1", VFIO_SPAPR_TCE_v2_IOMMU);
    CHECK(set_container(h, h.open("vfio/2"), c) == 0);
    CHECK(h.emu.domains().size() == 1);
    CHECK(driver(h, c).groups().size() == 2);
  }
  SECTION("a group behind another TCE unit is incompatible: EPERM") {
    const int c = setup(h, "vfio/1", VFIO_SPAPR_TCE_v2_IOMMU);
    const int g3 = h.open("vfio/3");
    CHECK(set_container(h, g3, c) == EPERM);
    CHECK(driver(h, c).groups().size() == 1);
    // And when SET_IOMMU attaches both; v1 refuses a second group before looking at its unit.
    const int c2 = h.open("vfio/vfio");
    REQUIRE(set_container(h, h.open("vfio/2"), c2) == 0);
    REQUIRE(set_container(h, g3, c2) == 0);
    CHECK(h.fails(c2, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU) == EPERM);
    CHECK(h.fails(c2, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU) == EBUSY);
    CHECK(h.emu.domains().size() == 1);  // only the first container's
  }
  SECTION("v2 needs dynamic DMA windows: EINVAL; v1 does not") {
    const int c = h.open("vfio/vfio");
    const int g4 = h.open("vfio/4");
    REQUIRE(set_container(h, g4, c) == 0);
    CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU) == EINVAL);
    CHECK(h.ioctl(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU) == 0);
    vfio_iommu_spapr_tce_info info{};
    info.argsz = sizeof(info);
    REQUIRE(h.ioctl(c, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info) == 0);
    CHECK(info.flags == 0);
  }
  SECTION("a TCE group cannot join a VT-d container, nor the reverse") {
    const int c = setup(h, "vfio/1", VFIO_SPAPR_TCE_v2_IOMMU);
    CHECK(set_container(h, h.open("vfio/5"), c) == EPERM);
  }
}

// ---- GET_INFO --------------------------------------------------------------------------------

TEST_CASE("spapr: SPAPR_TCE_GET_INFO", "[spapr][info]") {
  Harness h;
  SECTION("v2 reports the dynamic windows") {
    const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_v2_IOMMU);
    vfio_iommu_spapr_tce_info info{};
    info.argsz = sizeof(info);
    REQUIRE(h.ioctl(c, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info) == 0);
    CHECK(info.argsz == 32);
    CHECK(info.flags == VFIO_IOMMU_SPAPR_INFO_DDW);
    CHECK(info.dma32_window_start == 0);
    CHECK(info.dma32_window_size == G1);
    CHECK(info.ddw.pgsizes == (K4 | K64 | M2 | G1));
    CHECK(info.ddw.max_dynamic_windows_supported == 2);
    CHECK(info.ddw.levels == 5);
  }
  SECTION("v1 does not, and argsz < 32 gets 16 bytes") {
    const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_IOMMU);
    vfio_iommu_spapr_tce_info info;
    std::memset(&info, 0xa5, sizeof(info));
    info.argsz = 24;
    REQUIRE(h.ioctl(c, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info) == 0);
    CHECK(info.argsz == 24);
    CHECK(info.flags == 0);
    CHECK(info.dma32_window_size == G1);
    CHECK(info.ddw.pgsizes == 0xa5a5a5a5a5a5a5a5);  // untouched
    info.argsz = 32;
    REQUIRE(h.ioctl(c, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info) == 0);
    CHECK(info.ddw.pgsizes == 0);  // zeroed on v1
    CHECK(info.ddw.levels == 0);
  }
  SECTION("argsz and EFAULT") {
    const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_v2_IOMMU);
    vfio_iommu_spapr_tce_info info{};
    info.argsz = 15;
    CHECK(h.fails(c, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info) == EINVAL);
    Buffer hole(K4, PROT_NONE);
    CHECK(h.fails(c, VFIO_IOMMU_SPAPR_TCE_GET_INFO, hole.addr()) == EFAULT);
    // GET_INFO creates nothing.
    CHECK(driver(h, c).windows().empty());
  }
}

// ---- v1 ---------------------------------------------------------------------------------------

TEST_CASE("spapr v1: the vfio.rst example flow", "[spapr][v1][flow]") {
  Harness h;
  const int c = h.open("vfio/vfio");
  REQUIRE(h.ioctl(c, VFIO_GET_API_VERSION) == VFIO_API_VERSION);
  const int g = h.open("vfio/3");
  vfio_group_status status{sizeof(status), 0};
  REQUIRE(h.ioctl(g, VFIO_GROUP_GET_STATUS, &status) == 0);
  REQUIRE((status.flags & VFIO_GROUP_FLAGS_VIABLE) != 0);
  REQUIRE(set_container(h, g, c) == 0);
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU) == 0);

  vfio_iommu_spapr_tce_info info{};
  info.argsz = sizeof(info);
  REQUIRE(h.ioctl(c, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info) == 0);
  REQUIRE(h.ioctl(c, VFIO_IOMMU_ENABLE) == 0);
  CHECK(locked(h) == G1);  // the whole 32-bit window

  Buffer buf(M1);
  vfio_iommu_type1_dma_map dma_map{sizeof(dma_map), RW, buf.addr(), 0, M1};
  REQUIRE(h.ioctl(c, VFIO_IOMMU_MAP_DMA, &dma_map) == 0);
  const auto t = translate(h, 0x1234, iommu::Access::kWrite);
  CHECK(t.ok());
  CHECK(t.output == buf.addr() + 0x1234);
  CHECK(raw_tce(h, 0x1000) == ((buf.addr() + 0x1000) | 3));  // vaddr | READ | WRITE
  CHECK(raw_tce(h, M1) == 0);
  CHECK_FALSE(translate(h, M1).ok());

  REQUIRE(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_EEH) == 1);
  Group& grp = *h.emu.group_by_id(3);
  CHECK(eeh(h, c, VFIO_EEH_PE_ENABLE) == 0);
  CHECK(driver(h, c).pe_state(grp).enabled);
  CHECK(eeh(h, c, VFIO_EEH_PE_GET_STATE) == VFIO_EEH_PE_STATE_NORMAL);
  CHECK(inject(h, c, EEH_ERR_TYPE_32, EEH_ERR_FUNC_LD_CFG_ADDR) == 0);
  CHECK(eeh(h, c, VFIO_EEH_PE_GET_STATE) == VFIO_EEH_PE_STATE_STOPPED);
  CHECK(frozen(h, grp));
  {
    std::lock_guard lock(h.emu.mu);
    CHECK(group_frozen(grp));
  }
  CHECK(eeh(h, c, VFIO_EEH_PE_UNFREEZE_IO) == 0);
  CHECK(eeh(h, c, VFIO_EEH_PE_GET_STATE) == VFIO_EEH_PE_STATE_STOPPED_DMA);
  CHECK(eeh(h, c, VFIO_EEH_PE_RESET_HOT) == 0);
  CHECK(eeh(h, c, VFIO_EEH_PE_GET_STATE) == VFIO_EEH_PE_STATE_STOPPED);
  CHECK(driver(h, c).pe_state(grp).in_reset);
  CHECK(eeh(h, c, VFIO_EEH_PE_RESET_DEACTIVATE) == 0);
  CHECK(eeh(h, c, VFIO_EEH_PE_CONFIGURE) == 0);
  CHECK(eeh(h, c, VFIO_EEH_PE_GET_STATE) == VFIO_EEH_PE_STATE_NORMAL);
  CHECK_FALSE(frozen(h, grp));
  {
    std::lock_guard lock(h.emu.mu);
    CHECK_FALSE(group_frozen(grp));
  }
  // The mapping survived the PE reset (the TCEs belong to the container).
  CHECK(translate(h, 0x1234).ok());

  h.close(g);  // the last group: the driver and everything it charged go
  CHECK(locked(h) == 0);
  CHECK(h.emu.domains().empty());
  CHECK_FALSE(frozen(h, grp));
}

TEST_CASE("spapr v1: ENABLE and DISABLE", "[spapr][v1]") {
  Harness h;
  SECTION("v2 has neither") {
    const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_v2_IOMMU);
    CHECK(h.fails(c, VFIO_IOMMU_ENABLE) == ENOTTY);
    CHECK(h.fails(c, VFIO_IOMMU_DISABLE) == ENOTTY);
  }
  SECTION("ENABLE charges the 32-bit window, DISABLE gives it back and keeps the TCEs") {
    const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_IOMMU);
    Buffer buf(M2);
    CHECK(map(h, c, buf.addr(), 0, K4) == EPERM);  // not enabled
    REQUIRE(h.ioctl(c, VFIO_IOMMU_ENABLE) == 0);
    CHECK(driver(h, c).enabled());
    CHECK(driver(h, c).owner() == h.caller.pid);
    CHECK(h.fails(c, VFIO_IOMMU_ENABLE) == EBUSY);
    CHECK(locked(h) == G1);
    REQUIRE(map(h, c, buf.addr(), 0, K4) == 0);
    CHECK(locked(h) == G1 + kDefaultTableCharge);
    CHECK(h.ioctl(c, VFIO_IOMMU_DISABLE) == 0);
    CHECK(locked(h) == kDefaultTableCharge);
    CHECK(h.ioctl(c, VFIO_IOMMU_DISABLE) == 0);  // always 0
    CHECK(translate(h, 0).ok());
    CHECK(map(h, c, buf.addr(), K4, K4) == EPERM);
    CHECK(unmap(h, c, 0, K4) == EPERM);
    REQUIRE(h.ioctl(c, VFIO_IOMMU_ENABLE) == 0);
    CHECK(map(h, c, buf.addr(), K4, K4) == 0);
  }
  SECTION("RLIMIT_MEMLOCK and CAP_IPC_LOCK") {
    const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_IOMMU);
    h.memlock_limit_bytes = G1 - 1;  // whole pages: G1 - 4K
    CHECK(h.fails(c, VFIO_IOMMU_ENABLE) == ENOMEM);
    CHECK(locked(h) == 0);
    CHECK_FALSE(driver(h, c).enabled());
    // The failed ENABLE has bound the container to this process nevertheless (tce_iommu_mm_set
    // comes before the charge).
    CHECK(driver(h, c).owner() == h.caller.pid);
    h.memlock_limit_bytes = G1;
    CHECK(h.ioctl(c, VFIO_IOMMU_ENABLE) == 0);
    REQUIRE(h.ioctl(c, VFIO_IOMMU_DISABLE) == 0);
    h.memlock_limit_bytes = 0;
    h.capabilities.insert(CAP_IPC_LOCK);
    CHECK(h.ioctl(c, VFIO_IOMMU_ENABLE) == 0);
    CHECK(locked(h) == G1);
  }
}

TEST_CASE("spapr: the default window is created on first use", "[spapr][window]") {
  Harness h;
  Buffer buf(M2);
  SECTION("v1: by MAP, not by ENABLE or GET_INFO") {
    const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_IOMMU);
    REQUIRE(h.ioctl(c, VFIO_IOMMU_ENABLE) == 0);
    vfio_iommu_spapr_tce_info info{};
    info.argsz = sizeof(info);
    REQUIRE(h.ioctl(c, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info) == 0);
    CHECK(driver(h, c).windows().empty());
    CHECK(driver(h, c).default_window_pending());
    REQUIRE(map(h, c, buf.addr(), 0, K4) == 0);
    const auto ws = driver(h, c).windows();
    REQUIRE(ws.size() == 1);
    CHECK(ws[0].slot == 0);
    CHECK(ws[0].bus_start == 0);
    CHECK(ws[0].size == G1);
    CHECK(ws[0].page_shift == 12);
    CHECK(ws[0].levels == 1);
    CHECK_FALSE(driver(h, c).default_window_pending());
  }
  SECTION("v1: by UNMAP too") {
    const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_IOMMU);
    REQUIRE(h.ioctl(c, VFIO_IOMMU_ENABLE) == 0);
    CHECK(unmap(h, c, 0, K4) == 0);
    CHECK(driver(h, c).windows().size() == 1);
  }
  SECTION("it stays when the MAP that created it fails a later check") {
    const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_IOMMU);
    REQUIRE(h.ioctl(c, VFIO_IOMMU_ENABLE) == 0);
    CHECK(map(h, c, buf.addr(), 2 * G1, K4) == ENXIO);
    CHECK(driver(h, c).windows().size() == 1);
  }
  SECTION("its table is charged, and a charge that fails fails the MAP") {
    const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_IOMMU);
    h.memlock_limit_bytes = G1 + kDefaultTableCharge - K4;
    REQUIRE(h.ioctl(c, VFIO_IOMMU_ENABLE) == 0);
    CHECK(map(h, c, buf.addr(), 0, K4) == ENOMEM);
    CHECK(driver(h, c).windows().empty());
    CHECK(driver(h, c).default_window_pending());
    CHECK(locked(h) == G1);
    h.memlock_limit_bytes = G1 + kDefaultTableCharge;
    CHECK(map(h, c, buf.addr(), 0, K4) == 0);
    CHECK(driver(h, c).locked_bytes() == G1 + kDefaultTableCharge);
  }
  SECTION("v2: not by REGISTER_MEMORY; by UNMAP or CREATE") {
    const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_v2_IOMMU);
    REQUIRE(reg(h, c, buf.addr(), M2) == 0);
    CHECK(driver(h, c).windows().empty());
    CHECK(unmap(h, c, 0, K4) == 0);
    CHECK(driver(h, c).windows().size() == 1);
    u64 start = 0;
    REQUIRE(create(h, c, 16, G1, 1, &start) == 0);
    CHECK(start == kDdwStart);
    CHECK(driver(h, c).windows().size() == 2);
  }
}

// ---- MAP / UNMAP -----------------------------------------------------------------------------

TEST_CASE("spapr: MAP_DMA errors in Linux's order", "[spapr][map]") {
  Harness h;
  const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_IOMMU);
  Buffer buf(M2);
  Buffer hole(K4, PROT_NONE);
  // Not enabled comes before the argument is even read.
  CHECK(h.fails(c, VFIO_IOMMU_MAP_DMA, hole.addr()) == EPERM);
  REQUIRE(h.ioctl(c, VFIO_IOMMU_ENABLE) == 0);
  CHECK(h.fails(c, VFIO_IOMMU_MAP_DMA, hole.addr()) == EFAULT);
  vfio_iommu_type1_dma_map m{31, RW, buf.addr(), 0, K4};
  CHECK(h.fails(c, VFIO_IOMMU_MAP_DMA, &m) == EINVAL);
  // Flags come before the window lookup; VADDR is not an sPAPR flag.
  CHECK(map(h, c, buf.addr(), 2 * G1, K4, RW | VFIO_DMA_MAP_FLAG_VADDR) == EINVAL);
  CHECK(map(h, c, buf.addr(), 2 * G1, K4) == ENXIO);
  CHECK(map(h, c, buf.addr(), 2 * G1, K4, 0) == ENXIO);  // READ/WRITE is checked later
  CHECK(map(h, c, buf.addr(), 0, 0x800) == EINVAL);
  CHECK(map(h, c, buf.addr() + 0x800, 0, K4) == EINVAL);
  CHECK(map(h, c, buf.addr(), 0, K4, 0) == EINVAL);
  CHECK(map(h, c, buf.addr(), 0x800, K4, 0) == EINVAL);  // before the iova check
  // iommu_tce_put_param_check is a macro that evaluates to 1: the ioctl returns 1.
  CHECK(map_raw(h, c, buf.addr(), 0x800, K4) == 1);
  CHECK_FALSE(translate(h, 0).ok());
  CHECK(map_raw(h, c, buf.addr(), 0, 0) == 0);  // nothing to map
  CHECK(map(h, c, buf.addr(), G1 - K4, 2 * K4) == EINVAL);  // runs past the window
  // v1 pins every page for writing, whatever the direction.
  CHECK(map(h, c, hole.addr(), 0, K4) == EFAULT);
  Buffer ro(K4, PROT_READ);
  CHECK(map(h, c, ro.addr(), 0, K4, VFIO_DMA_MAP_FLAG_READ) == EFAULT);
  {
    Buffer partial(2 * K4);
    REQUIRE(mprotect(reinterpret_cast<char*>(partial.get()) + K4, K4, PROT_NONE) == 0);
    REQUIRE(map(h, c, buf.addr(), 0, K4) == 0);
    CHECK(map(h, c, partial.addr(), 0, 2 * K4) == EFAULT);
    // A failed MAP leaves the table alone.
    CHECK(translate(h, 0).output == buf.addr());
    CHECK_FALSE(translate(h, K4).ok());
  }
  CHECK(h.fails(c, 0x3b7f) == ENOTTY);
}

TEST_CASE("spapr: MAP replaces TCEs; UNMAP clears any range and writes nothing back",
          "[spapr][map][unmap]") {
  Harness h;
  const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_IOMMU);
  REQUIRE(h.ioctl(c, VFIO_IOMMU_ENABLE) == 0);
  Buffer a(M2), b(M2);
  REQUIRE(map(h, c, a.addr(), 0, 3 * K4) == 0);
  REQUIRE(map(h, c, b.addr(), K4, K4) == 0);  // over an existing TCE: silently replaced
  CHECK(translate(h, 0).output == a.addr());
  CHECK(translate(h, K4).output == b.addr());
  CHECK(translate(h, 2 * K4).output == a.addr() + 2 * K4);
  // WRITE alone: PowerNV sets READ too.
  REQUIRE(map(h, c, b.addr(), 8 * K4, K4, VFIO_DMA_MAP_FLAG_WRITE) == 0);
  CHECK(translate(h, 8 * K4).prot == iommu::kProtRW);
  REQUIRE(map(h, c, b.addr(), 9 * K4, K4, VFIO_DMA_MAP_FLAG_READ) == 0);
  CHECK(translate(h, 9 * K4).ok());
  CHECK_FALSE(translate(h, 9 * K4, iommu::Access::kWrite).ok());

  // Any range: part mapped, part never mapped, starting inside an earlier MAP.
  auto u = unmap_arg(K4, 4 * K4);
  REQUIRE(h.ioctl(c, VFIO_IOMMU_UNMAP_DMA, &u) == 0);
  CHECK(u.size == 4 * K4);  // not written back
  CHECK(translate(h, 0).ok());
  CHECK_FALSE(translate(h, K4).ok());
  CHECK_FALSE(translate(h, 2 * K4).ok());
  CHECK(unmap(h, c, 100 * K4, 10 * K4) == 0);  // nothing there: fine
  CHECK(unmap(h, c, 0, 0) == 0);

  SECTION("UNMAP errors in Linux's order") {
    auto small = unmap_arg(0, K4);
    small.argsz = 23;
    CHECK(h.fails(c, VFIO_IOMMU_UNMAP_DMA, &small) == EINVAL);
    CHECK(unmap(h, c, 2 * G1, K4, VFIO_DMA_UNMAP_FLAG_ALL) == EINVAL);  // flags first
    CHECK(unmap(h, c, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL) == EINVAL);
    CHECK(unmap(h, c, 2 * G1, K4) == ENXIO);
    CHECK(unmap(h, c, 0x800, 0x800) == EINVAL);  // size before the iova
    CHECK(unmap_raw(h, c, 0x800, K4) == 1);      // the clear_param_check quirk
    CHECK(translate(h, 0).ok());
    // The range stops at the window's end.
    CHECK(unmap(h, c, 0, 2 * G1) == 0);
    CHECK_FALSE(translate(h, 0).ok());
    CHECK_FALSE(translate(h, 8 * K4).ok());
    REQUIRE(h.ioctl(c, VFIO_IOMMU_DISABLE) == 0);
    CHECK(unmap(h, c, 0, K4) == EPERM);
  }
}

// ---- v2 --------------------------------------------------------------------------------------

TEST_CASE("spapr v2: register, create, map, unmap, remove, unregister", "[spapr][v2][flow]") {
  Harness h;
  h.pretend_hugetlb_page_size = M2;  // 64K TCEs need pages of at least 64K
  const int c = h.open("vfio/vfio");
  const int g = h.open("vfio/3");
  REQUIRE(set_container(h, g, c) == 0);
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU) == 0);
  Buffer ram(M4);
  REQUIRE(reg(h, c, ram.addr(), M4) == 0);
  CHECK(locked(h) == M4);
  CHECK(driver(h, c).enabled());
  REQUIRE(driver(h, c).regions().size() == 1);
  CHECK(driver(h, c).regions()[0].vaddr == ram.addr());

  u64 start = 0;
  REQUIRE(create(h, c, 16, G1, 1, &start) == 0);  // 64K pages, 1 GiB
  CHECK(start == kDdwStart);
  // The default window came first; the tables of both are charged (64K-page table: 2^14
  // entries of 8 bytes, twice).
  const u64 ddw_charge = 2 * ((G1 / K64) * 8);
  CHECK(locked(h) == M4 + kDefaultTableCharge + ddw_charge);
  auto ws = driver(h, c).windows();
  REQUIRE(ws.size() == 2);
  CHECK(ws[1].bus_start == kDdwStart);
  CHECK(ws[1].page_shift == 16);

  REQUIRE(map(h, c, ram.addr(), kDdwStart, M2) == 0);
  REQUIRE(map(h, c, ram.addr() + M2, 0, K64) == 0);  // the default window, 4K TCEs
  const auto t = translate(h, kDdwStart + 0x12345, iommu::Access::kWrite);
  CHECK(t.ok());
  CHECK(t.output == ram.addr() + 0x12345);
  CHECK(t.page_size == K64);
  CHECK(raw_tce(h, kDdwStart + K64) == ((ram.addr() + K64) | 3));
  CHECK(translate(h, 0x5000).output == ram.addr() + M2 + 0x5000);
  // UNMAP clears in the window holding iova only, even when the range reaches another window.
  REQUIRE(unmap(h, c, 0, 2 * kDdwStart) == 0);
  CHECK_FALSE(translate(h, 0x5000).ok());
  CHECK(translate(h, kDdwStart).ok());

  REQUIRE(unmap(h, c, kDdwStart, K64) == 0);
  CHECK_FALSE(translate(h, kDdwStart).ok());
  CHECK(translate(h, kDdwStart + K64).ok());
  REQUIRE(remove(h, c, kDdwStart) == 0);  // clears the rest
  CHECK(driver(h, c).windows().size() == 1);
  CHECK(locked(h) == M4 + kDefaultTableCharge);
  CHECK(map(h, c, ram.addr(), kDdwStart, K64) == ENXIO);

  REQUIRE(unmap(h, c, 0, G1) == 0);
  REQUIRE(unreg(h, c, ram.addr(), M4) == 0);
  CHECK(driver(h, c).regions().empty());
  CHECK(locked(h) == kDefaultTableCharge);
  CHECK(driver(h, c).enabled());  // stays enabled: MAP now fails on the memory, not EPERM
  CHECK(map(h, c, ram.addr(), 0, K4) == EINVAL);

  h.close(g);
  CHECK(locked(h) == 0);
  CHECK(h.emu.domains().empty());
}

TEST_CASE("spapr v1: no memory registration, no dynamic windows", "[spapr][v1]") {
  Harness h;
  Buffer ram(M1);
  const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_IOMMU);
  CHECK(reg(h, c, ram.addr(), M1) == ENOTTY);
  CHECK(unreg(h, c, ram.addr(), M1) == ENOTTY);
  CHECK(create(h, c, 16, G1, 1) == ENOTTY);
  CHECK(remove(h, c, 0) == ENOTTY);
  CHECK(driver(h, c).owner() == 0);  // none of them bound the container
}

TEST_CASE("spapr v2: REGISTER_MEMORY errors in Linux's order", "[spapr][v2][register]") {
  Harness h;
  Buffer ram(M4);
  const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_v2_IOMMU);
  SECTION("argument checks") {
    Buffer hole(K4, PROT_NONE);
    CHECK(h.fails(c, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, hole.addr()) == EFAULT);
    vfio_iommu_spapr_register_memory r{23, 0, ram.addr(), M1};
    CHECK(h.fails(c, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &r) == EINVAL);
    r = {sizeof(r), 1, ram.addr(), M1};
    CHECK(h.fails(c, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &r) == EINVAL);
    CHECK(reg(h, c, ram.addr() + 0x800, M1) == EINVAL);
    CHECK(reg(h, c, ram.addr(), M1 + 0x800) == EINVAL);
    CHECK(reg(h, c, 0 - K4, 2 * K4) == EINVAL);  // wraps
    CHECK(reg(h, c, 0 - K4, K4) == EINVAL);      // ends exactly at 2^64: wraps to 0
    CHECK(reg(h, c, ram.addr(), 0) == ENOMEM);   // an empty page array cannot be allocated
    CHECK(locked(h) == 0);
    CHECK_FALSE(driver(h, c).enabled());
    CHECK(map(h, c, ram.addr(), 0, K4) == EPERM);
  }
  SECTION("the same region again, overlaps, RLIMIT_MEMLOCK") {
    REQUIRE(reg(h, c, ram.addr(), M1) == 0);
    CHECK(reg(h, c, ram.addr(), M1) == EBUSY);
    CHECK(reg(h, c, ram.addr(), M2) == EINVAL);           // overlaps, different size
    CHECK(reg(h, c, ram.addr() + K4, K4) == EINVAL);      // inside it
    CHECK(reg(h, c, ram.addr() + M1, M1) == 0);           // adjacent: fine
    CHECK(locked(h) == M2);
    h.memlock_limit_bytes = M2 + M1 - 1;
    CHECK(reg(h, c, ram.addr(), M1) == EBUSY);            // before the charge
    CHECK(reg(h, c, ram.addr() + M2, M1) == ENOMEM);
    Buffer hole(M1, PROT_NONE);
    CHECK(reg(h, c, hole.addr(), M1) == ENOMEM);          // the charge comes before the pin
    CHECK(reg(h, c, ram.addr(), M2) == ENOMEM);           // and before the overlap check
    h.capabilities.insert(CAP_IPC_LOCK);
    CHECK(reg(h, c, ram.addr() + M2, M1) == 0);
    CHECK(locked(h) == M2 + M1);
    CHECK(driver(h, c).locked_bytes() == M2 + M1);
  }
  SECTION("the memory must be writable, as pinning with FOLL_WRITE needs") {
    Buffer hole(M1, PROT_NONE);
    CHECK(reg(h, c, hole.addr(), M1) == EFAULT);
    Buffer ro(M1, PROT_READ);
    CHECK(reg(h, c, ro.addr(), M1) == EFAULT);
    CHECK(locked(h) == 0);
    CHECK(driver(h, c).regions().empty());
  }
  SECTION("a region pinned only in part: pin_user_pages()'s count comes back") {
    Buffer part(4 * K4);
    REQUIRE(mprotect(reinterpret_cast<char*>(part.get()) + 2 * K4, K4, PROT_READ) == 0);
    CHECK(reg_raw(h, c, part.addr(), 4 * K4) == 2);
    CHECK(locked(h) == 0);
    CHECK(driver(h, c).regions().empty());
    CHECK_FALSE(driver(h, c).enabled());
  }
}

TEST_CASE("spapr v2: UNREGISTER_MEMORY", "[spapr][v2][register]") {
  Harness h;
  int g = -1;
  const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_v2_IOMMU, &g);
  Buffer ram(M2);
  // No process bound yet: EPERM before anything is read.
  CHECK(h.fails(c, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, u64{0}) == EPERM);
  REQUIRE(reg(h, c, ram.addr(), M1) == 0);
  vfio_iommu_spapr_register_memory r{23, 0, ram.addr(), M1};
  CHECK(h.fails(c, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, &r) == EINVAL);
  r = {sizeof(r), 2, ram.addr(), M1};
  CHECK(h.fails(c, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, &r) == EINVAL);
  CHECK(unreg(h, c, ram.addr() + 1, M1) == EINVAL);
  CHECK(unreg(h, c, ram.addr(), M1 - K4) == ENOENT);  // no bisecting
  CHECK(unreg(h, c, ram.addr() + M1, M1) == ENOENT);
  CHECK(unreg(h, c, ram.addr(), 0) == ENOENT);

  SECTION("a region TCEs still point into") {
    REQUIRE(map(h, c, ram.addr(), 0, K4) == 0);
    // Linux's mm_iommu_put fails with EBUSY, but its result is dropped: the container forgets
    // the region, the ioctl returns 0, and the region stays pinned, charged and mappable.
    CHECK(unreg(h, c, ram.addr(), M1) == 0);
    REQUIRE(driver(h, c).regions().size() == 1);
    CHECK_FALSE(driver(h, c).regions()[0].listed);
    CHECK(locked(h) == M1 + kDefaultTableCharge);
    CHECK(unreg(h, c, ram.addr(), M1) == ENOENT);
    CHECK(map(h, c, ram.addr() + K4, K4, K4) == 0);
    CHECK(reg(h, c, ram.addr() + K4, K4) == EINVAL);  // still overlaps
    // Registering it again references it again, without a second charge.
    CHECK(reg(h, c, ram.addr(), M1) == 0);
    CHECK(locked(h) == M1 + kDefaultTableCharge);
    REQUIRE(unmap(h, c, 0, 2 * K4) == 0);
    CHECK(unreg(h, c, ram.addr(), M1) == 0);
    CHECK(driver(h, c).regions().empty());
    CHECK(locked(h) == kDefaultTableCharge);
  }
  SECTION("an orphaned region is given back when the container goes") {
    REQUIRE(map(h, c, ram.addr(), 0, K4) == 0);
    REQUIRE(unreg(h, c, ram.addr(), M1) == 0);
    CHECK(locked(h) == M1 + kDefaultTableCharge);
    h.close(g);
    CHECK(locked(h) == 0);
  }
}

TEST_CASE("spapr v2: MAP needs registered memory that can back the TCE page", "[spapr][v2][map]") {
  Harness h;
  h.pretend_hugetlb_page_size = M2;  // hugetlb pages: the region's alignment decides
  const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_v2_IOMMU);
  Buffer ram(M4);
  REQUIRE(reg(h, c, ram.addr(), M1) == 0);
  REQUIRE(reg(h, c, ram.addr() + M1, M1) == 0);
  REQUIRE(reg(h, c, ram.addr() + M2 + K4, M1 - K4) == 0);  // aligned to 4K only
  REQUIRE(create(h, c, 16, G1, 2) == 0);
  CHECK(map(h, c, ram.addr() + M4 - K64, 0, K4) == EINVAL);  // not registered
  // Two adjacent regions back one MAP.
  CHECK(map(h, c, ram.addr() + M1 - K64, kDdwStart, 2 * K64) == 0);
  CHECK(translate(h, kDdwStart + K64).output == ram.addr() + M1);
  // A 64K page needs a region aligned to 64K.
  CHECK(map(h, c, ram.addr() + M2 + K4, 0, K4) == 0);
  CHECK(map(h, c, ram.addr() + M2 + K64, kDdwStart + M1, K64) == EINVAL);
  // The last page runs out of the region: nothing is mapped.
  CHECK(map(h, c, ram.addr() + M2 - K64, kDdwStart + M2, 2 * K64) == EINVAL);
  CHECK_FALSE(translate(h, kDdwStart + M2).ok());
  CHECK(driver(h, c).domain()->hw->stats().entries == 2 + 1);
}

TEST_CASE("spapr v2: the pages behind registered memory bound its TCE page size (mm_iommu)",
          "[spapr][v2][map]") {
  Harness h;  // the real mappings decide
  const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_v2_IOMMU);
  SECTION("base pages back 4K TCEs only, however the region is aligned") {
    Buffer ram(M4);  // 2M-aligned anonymous memory, not hugetlb (THP does not count either)
    REQUIRE(reg(h, c, ram.addr(), M2) == 0);
    CHECK(driver(h, c).regions()[0].page_shift() == 12);
    REQUIRE(create(h, c, 16, G1, 1) == 0);
    CHECK(map(h, c, ram.addr(), kDdwStart, K64) == EINVAL);
    CHECK(map(h, c, ram.addr(), 0, K64) == 0);  // the default window's 4K TCEs
  }
  SECTION("hugetlb pages back TCEs up to the region's natural alignment") {
    void* huge = mmap(nullptr, 2 * M2, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (huge == MAP_FAILED) {
      WARN("no hugetlb pages on this machine (vm.nr_hugepages): not checked");
      return;
    }
    std::memset(huge, 0, 2 * M2);
    const u64 a = reinterpret_cast<u64>(huge);
    REQUIRE(reg(h, c, a + K64, K64 * 4) == 0);  // aligned to 64K, 256K long
    REQUIRE(reg(h, c, a + M2, M2) == 0);        // a whole huge page
    CHECK(driver(h, c).regions()[0].page_shift() == 16);
    CHECK(driver(h, c).regions()[1].page_shift() == 21);
    REQUIRE(create(h, c, 16, G1, 1) == 0);
    CHECK(map(h, c, a + K64, kDdwStart, K64) == 0);
    munmap(huge, 2 * M2);
  }
  SECTION("a region that starts with base pages stays at 4K though huge pages follow") {
    // Linux's walk: the first page decides when it is not a hugetlb page.
    void* both = mmap(nullptr, 2 * M2, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(both != MAP_FAILED);
    const u64 a = (reinterpret_cast<u64>(both) + M2 - 1) & ~(M2 - 1);
    void* base = mmap(reinterpret_cast<void*>(a - K64), K64, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    REQUIRE(base != MAP_FAILED);
    void* huge = mmap(reinterpret_cast<void*>(a), M2, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_HUGETLB, -1, 0);
    if (huge == MAP_FAILED) {
      munmap(both, 2 * M2);
      WARN("no hugetlb pages on this machine (vm.nr_hugepages): not checked");
      return;
    }
    std::memset(reinterpret_cast<void*>(a - K64), 0, K64 + M2);
    REQUIRE(reg(h, c, a - K64, K64 + M2) == 0);
    CHECK(driver(h, c).regions()[0].page_shift() == 12);
    munmap(both, 2 * M2);
  }
}

TEST_CASE("spapr v2: CREATE and REMOVE", "[spapr][v2][window]") {
  Harness h;
  h.pretend_hugetlb_page_size = M2;  // 64K TCEs need pages of at least 64K
  const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_v2_IOMMU);
  Buffer ram(M2);
  SECTION("argument checks") {
    vfio_iommu_spapr_tce_create cr{};
    cr.argsz = 39;
    cr.page_shift = 16;
    cr.window_size = G1;
    cr.levels = 1;
    CHECK(h.fails(c, VFIO_IOMMU_SPAPR_TCE_CREATE, &cr) == EINVAL);
    cr.argsz = sizeof(cr);
    cr.flags = 1;
    CHECK(h.fails(c, VFIO_IOMMU_SPAPR_TCE_CREATE, &cr) == EINVAL);
    CHECK(driver(h, c).windows().empty());  // the default window comes after these
    Buffer hole(K4, PROT_NONE);
    CHECK(h.fails(c, VFIO_IOMMU_SPAPR_TCE_CREATE, hole.addr()) == EFAULT);
    vfio_iommu_spapr_tce_remove rm{15, 0, 0};
    CHECK(h.fails(c, VFIO_IOMMU_SPAPR_TCE_REMOVE, &rm) == EINVAL);
    rm = {sizeof(rm), 1, 0};
    CHECK(h.fails(c, VFIO_IOMMU_SPAPR_TCE_REMOVE, &rm) == EINVAL);
  }
  SECTION("window parameters") {
    CHECK(create(h, c, 24, G1, 1) == EINVAL);  // 16M pages: not on this PHB
    CHECK(create(h, c, 13, G1, 1) == EINVAL);
    CHECK(create(h, c, 64, G1, 1) == EINVAL);
    CHECK(create(h, c, 16, G1, 0) == EINVAL);
    CHECK(create(h, c, 16, G1, 6) == EINVAL);
    CHECK(create(h, c, 16, 3 * G1, 1) == EINVAL);
    CHECK(create(h, c, 16, K4, 1) == EINVAL);  // smaller than a page
    // The default window was created by the first CREATE and stays.
    CHECK(driver(h, c).windows().size() == 1);
    const u64 before = locked(h);
    CHECK(before == kDefaultTableCharge);
    // 2^46 4K entries in one level break the 55-bit table limit; the charge is undone.
    CHECK(create(h, c, 12, u64{1} << 58, 1) == EINVAL);
    CHECK(locked(h) == before);
    u64 start = 0;
    CHECK(create(h, c, 21, u64{1} << 40, 3, &start) == 0);
    CHECK(start == kDdwStart);
    CHECK(create(h, c, 16, G1, 1) == ENOSPC);  // both slots used
  }
  SECTION("the table charge") {
    h.memlock_limit_bytes = kDefaultTableCharge;
    CHECK(create(h, c, 12, G1, 1) == ENOMEM);  // the default window fits, this one not
    CHECK(driver(h, c).windows().size() == 1);
    CHECK(locked(h) == kDefaultTableCharge);
    h.memlock_limit_bytes = 0;
    REQUIRE(remove(h, c, 0) == 0);
    CHECK(create(h, c, 12, G1, 1) == ENOMEM);
    CHECK(driver(h, c).windows().empty());
  }
  SECTION("REMOVE of 0 cancels the pending default window") {
    CHECK(remove(h, c, 0) == 0);
    CHECK_FALSE(driver(h, c).default_window_pending());
    REQUIRE(reg(h, c, ram.addr(), M2) == 0);
    CHECK(map(h, c, ram.addr(), 0, K4) == ENXIO);  // no window at all now
    CHECK(remove(h, c, 0) == EINVAL);
    // Slot 0 is free: the hardware places a new window at the 32-bit base.
    u64 start = 1;
    REQUIRE(create(h, c, 16, M2 * 16, 1, &start) == 0);
    CHECK(start == 0);
    CHECK(map(h, c, ram.addr(), 0, K64) == 0);
  }
  SECTION("REMOVE finds the window by any address in it") {
    u64 start = 0;
    REQUIRE(create(h, c, 16, G1, 1, &start) == 0);
    REQUIRE(reg(h, c, ram.addr(), M2) == 0);
    REQUIRE(map(h, c, ram.addr(), start + K64, K64) == 0);
    CHECK(remove(h, c, start + G1) == EINVAL);  // just past it
    CHECK(remove(h, c, start + 5 * K64) == 0);
    CHECK(driver(h, c).windows().size() == 1);
    CHECK(driver(h, c).domain()->hw->stats().entries == 0);
    REQUIRE(remove(h, c, 0x1234) == 0);  // the default window
    CHECK(driver(h, c).windows().empty());
    CHECK(locked(h) == M2);
  }
}

TEST_CASE("spapr: the container is bound to the process that first used it", "[spapr][mm]") {
  Harness h;
  const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_v2_IOMMU);
  Buffer ram(M2);
  const pid_t me = h.caller.pid;
  // Before any binding ioctl, another process may use the container.
  h.caller.pid = me + 1;
  vfio_iommu_spapr_tce_info info{};
  info.argsz = sizeof(info);
  CHECK(h.ioctl(c, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info) == 0);
  h.caller.pid = me;
  // Even a REGISTER that fails binds it (tce_iommu_mm_set comes first).
  vfio_iommu_spapr_register_memory bad{sizeof(bad), 1, ram.addr(), M2};
  CHECK(h.fails(c, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &bad) == EINVAL);
  CHECK(driver(h, c).owner() == me);
  REQUIRE(reg(h, c, ram.addr(), M2) == 0);
  h.caller.pid = me + 1;
  CHECK(h.fails(c, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info) == EPERM);
  CHECK(map(h, c, ram.addr(), 0, K4) == EPERM);
  CHECK(unmap(h, c, 0, K4) == EPERM);
  CHECK(reg(h, c, ram.addr(), M2) == EPERM);
  CHECK(create(h, c, 16, G1, 1) == EPERM);
  CHECK(err_of(eeh(h, c, VFIO_EEH_PE_GET_STATE)) == EPERM);
  CHECK(h.fails(c, VFIO_IOMMU_ENABLE) == EPERM);  // the owner check precedes "v1 only"
  CHECK(h.fails(c, 0x3b7a) == EPERM);             // and the command switch itself
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU) == 1);
  h.caller.pid = me;
  CHECK(h.fails(c, 0x3b7a) == ENOTTY);
  CHECK(map(h, c, ram.addr(), 0, K4) == 0);
}

TEST_CASE("spapr v2: a window at the top of the bus space", "[spapr][v2][range]") {
  Harness h(top_of_bus());
  const int c = setup(h, "vfio/7", VFIO_SPAPR_TCE_v2_IOMMU);
  Buffer ram(M2);
  REQUIRE(reg(h, c, ram.addr(), M2) == 0);
  u64 start = 0;
  REQUIRE(create(h, c, 12, G1, 2, &start) == 0);
  CHECK(start == 0 - G1);
  const u64 last_page = 0 - K4;
  REQUIRE(map(h, c, ram.addr(), last_page, K4) == 0);
  const auto t = translate(h, iommu::kU64Max, iommu::Access::kWrite);
  CHECK(t.ok());
  CHECK(t.output == ram.addr() + K4 - 1);
  CHECK(map(h, c, ram.addr(), last_page, 2 * K4) == EINVAL);  // past 2^64
  REQUIRE(unmap(h, c, last_page, K4) == 0);
  CHECK_FALSE(translate(h, last_page).ok());
  REQUIRE(map(h, c, ram.addr(), last_page - K4, 2 * K4) == 0);
  REQUIRE(unmap(h, c, last_page - K4, 4 * K4) == 0);  // the range would wrap: stops at the top
  CHECK(driver(h, c).domain()->hw->stats().entries == 0);
}

// ---- EEH --------------------------------------------------------------------------------------

TEST_CASE("spapr: VFIO_EEH_PE_OP errors", "[spapr][eeh]") {
  Harness h;
  const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_v2_IOMMU);
  Buffer hole(K4, PROT_NONE);
  CHECK(h.fails(c, VFIO_EEH_PE_OP, hole.addr()) == EFAULT);
  vfio_eeh_pe_op o{};
  o.argsz = 11;
  o.op = VFIO_EEH_PE_GET_STATE;
  CHECK(h.fails(c, VFIO_EEH_PE_OP, &o) == EINVAL);
  o.argsz = 12;
  CHECK(h.ioctl(c, VFIO_EEH_PE_OP, &o) == VFIO_EEH_PE_STATE_NORMAL);
  o.flags = 1;
  CHECK(h.fails(c, VFIO_EEH_PE_OP, &o) == EINVAL);
  CHECK(err_of(eeh(h, c, 10)) == EINVAL);
  CHECK(err_of(inject(h, c, EEH_ERR_TYPE_32, EEH_ERR_FUNC_LD_CFG_ADDR, 39)) == EINVAL);
  CHECK(err_of(inject(h, c, EEH_ERR_TYPE_64, EEH_ERR_FUNC_MAX + 1)) == EINVAL);
  CHECK(err_of(inject(h, c, EEH_ERR_TYPE_64, 0xffffffff)) == EINVAL);  // a negative int
  CHECK(err_of(inject(h, c, 2, EEH_ERR_FUNC_LD_CFG_ADDR)) == ERANGE);  // PowerNV: no such type
  CHECK(eeh(h, c, VFIO_EEH_PE_GET_STATE) == VFIO_EEH_PE_STATE_NORMAL);  // nothing injected
  CHECK(inject(h, c, EEH_ERR_TYPE_64, EEH_ERR_FUNC_DMA_WR_TARGET) == 0);
  CHECK(eeh(h, c, VFIO_EEH_PE_GET_STATE) == VFIO_EEH_PE_STATE_STOPPED);
}

TEST_CASE("spapr: the EEH PE state machine", "[spapr][eeh]") {
  Harness h;
  int gfd = -1;
  const int c = setup(h, "vfio/3", VFIO_SPAPR_TCE_IOMMU, &gfd);
  Group& g = *h.emu.group_by_id(3);
  CHECK_FALSE(driver(h, c).pe_state(g).enabled);
  CHECK(eeh(h, c, VFIO_EEH_PE_DISABLE) == 0);
  // Ops work without ENABLE, as in Linux.
  REQUIRE(inject(h, c, EEH_ERR_TYPE_32, EEH_ERR_FUNC_ST_MEM_DATA) == 0);
  CHECK(eeh(h, c, VFIO_EEH_PE_UNFREEZE_DMA) == 0);
  CHECK(eeh(h, c, VFIO_EEH_PE_GET_STATE) == VFIO_EEH_PE_STATE_UNAVAIL);  // DMA on, MMIO off
  CHECK(eeh(h, c, VFIO_EEH_PE_UNFREEZE_IO) == 0);
  CHECK(eeh(h, c, VFIO_EEH_PE_GET_STATE) == VFIO_EEH_PE_STATE_NORMAL);
  CHECK_FALSE(frozen(h, g));
  // ENABLE takes ownership of a frozen PE by thawing it.
  REQUIRE(inject(h, c, EEH_ERR_TYPE_32, EEH_ERR_FUNC_ST_MEM_DATA) == 0);
  CHECK(eeh(h, c, VFIO_EEH_PE_ENABLE) == 0);
  CHECK(eeh(h, c, VFIO_EEH_PE_GET_STATE) == VFIO_EEH_PE_STATE_NORMAL);
  CHECK(driver(h, c).pe_state(g).enabled);
  CHECK(eeh(h, c, VFIO_EEH_PE_RESET_FUNDAMENTAL) == 0);
  CHECK(frozen(h, g));
  CHECK(eeh(h, c, VFIO_EEH_PE_UNFREEZE_IO) == 0);
  CHECK(eeh(h, c, VFIO_EEH_PE_UNFREEZE_DMA) == 0);
  CHECK(frozen(h, g));  // still held in reset
  CHECK(eeh(h, c, VFIO_EEH_PE_RESET_DEACTIVATE) == 0);
  CHECK_FALSE(frozen(h, g));
  CHECK(eeh(h, c, VFIO_EEH_PE_DISABLE) == 0);
  CHECK_FALSE(driver(h, c).pe_state(g).enabled);
  // A group leaving its container takes its PE back to normal.
  REQUIRE(inject(h, c, EEH_ERR_TYPE_32, EEH_ERR_FUNC_ST_MEM_DATA) == 0);
  CHECK(frozen(h, g));
  {
    std::lock_guard lock(h.emu.mu);
    CHECK(group_frozen(g));
  }
  h.close(gfd);
  CHECK_FALSE(frozen(h, g));
  std::lock_guard lock(h.emu.mu);
  CHECK_FALSE(group_frozen(g));
}

TEST_CASE("spapr: EEH ops apply to every group; a group leaving clears the shared windows",
          "[spapr][eeh][v2]") {
  Harness h(parse_or_fail(kTwoPhbs));
  const int c = setup(h, "vfio/1", VFIO_SPAPR_TCE_v2_IOMMU);
  const int g2 = h.open("vfio/2");
  REQUIRE(set_container(h, g2, c) == 0);
  Group& grp1 = *h.emu.group_by_id(1);
  Group& grp2 = *h.emu.group_by_id(2);
  REQUIRE(inject(h, c, EEH_ERR_TYPE_32, EEH_ERR_FUNC_LD_MEM_ADDR) == 0);
  CHECK(frozen(h, grp1));
  CHECK(frozen(h, grp2));
  CHECK(eeh(h, c, VFIO_EEH_PE_GET_STATE) == VFIO_EEH_PE_STATE_STOPPED);
  REQUIRE(eeh(h, c, VFIO_EEH_PE_RESET_DEACTIVATE) == 0);
  CHECK_FALSE(frozen(h, grp1));
  CHECK_FALSE(frozen(h, grp2));

  Buffer ram(M2);
  REQUIRE(reg(h, c, ram.addr(), M2) == 0);
  REQUIRE(map(h, c, ram.addr(), 0, M1) == 0);
  REQUIRE(inject(h, c, EEH_ERR_TYPE_32, EEH_ERR_FUNC_LD_MEM_ADDR) == 0);
  // The windows' tables are shared by the groups: one leaving clears every TCE, and its PE is
  // recovered; the windows stay for the group that remains.
  REQUIRE(h.ioctl(g2, VFIO_GROUP_UNSET_CONTAINER) == 0);
  CHECK_FALSE(frozen(h, grp2));
  CHECK(frozen(h, grp1));
  CHECK_FALSE(translate(h, 0).ok());
  CHECK(driver(h, c).windows().size() == 1);
  CHECK(driver(h, c).groups().size() == 1);
  CHECK(eeh(h, c, VFIO_EEH_PE_GET_STATE) == VFIO_EEH_PE_STATE_STOPPED);
  CHECK(map(h, c, ram.addr(), 0, M1) == 0);
  CHECK(translate(h, 0).ok());
}

// ---- release ----------------------------------------------------------------------------------

TEST_CASE("spapr: the last group leaving releases everything", "[spapr][release]") {
  Harness h;
  h.pretend_hugetlb_page_size = M2;  // 64K TCEs need pages of at least 64K
  Buffer ram(M4);
  const int c = h.open("vfio/vfio");
  const int g = h.open("vfio/3");
  REQUIRE(set_container(h, g, c) == 0);
  SECTION("v1") {
    REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU) == 0);
    REQUIRE(h.ioctl(c, VFIO_IOMMU_ENABLE) == 0);
    REQUIRE(map(h, c, ram.addr(), 0, M4) == 0);
    CHECK(locked(h) == G1 + kDefaultTableCharge);
  }
  SECTION("v2, with a region left registered by a busy UNREGISTER") {
    REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU) == 0);
    REQUIRE(reg(h, c, ram.addr(), M2) == 0);
    REQUIRE(reg(h, c, ram.addr() + M2, M2) == 0);
    REQUIRE(create(h, c, 21, u64{1} << 36, 2) == 0);
    REQUIRE(map(h, c, ram.addr(), kDdwStart, M4) == 0);
    REQUIRE(unreg(h, c, ram.addr(), M2) == 0);
    CHECK(locked(h) > M4);
  }
  CHECK(h.close(c) == 0);  // the group keeps the container and its driver
  CHECK(locked(h) != 0);
  CHECK(h.emu.domains().size() == 1);
  CHECK(h.close(g) == 0);
  CHECK(locked(h) == 0);
  CHECK(h.emu.domains().empty());
}
