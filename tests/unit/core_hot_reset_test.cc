// VFIO_DEVICE_GET_PCI_HOT_RESET_INFO and VFIO_DEVICE_PCI_HOT_RESET (core/pci_hot_reset.h) against
// Linux 7.3's vfio_pci_core.c: which functions a slot or bus reset takes with it, the errno of
// each check in order, ownership through group fds or through the iommufd, and the reset itself.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstring>
#include <vector>

#include "core/device.h"
#include "core/pci_hot_reset.h"
#include "core/uapi/vfio.h"
#include "core/uapi/vfio_emu.h"
#include "tests/unit/core_harness.h"

using namespace vfio_emu;
using namespace vfio_emu::core;
using namespace vfio_emu::uapi;
using vfio_emu::test::Harness;

namespace {

// Bus 1: a two-function slot (group 1) and another slot (group 2): a bus reset takes all three.
// Bus 2: a function that refuses bus resets (group 3) next to group 4: neither has a reset.
// Bus 3: a hotplug slot of two functions in groups 5 and 6: a slot reset takes both, not 03:01.0.
// Bus 0: the root bus (group 8): no reset.
constexpr const char* kMachine = R"(
[[iommu]]
name = "dmar0"
model = "vtd"
[[group]]
id = 1
iommu = "dmar0"
devices = ["0000:01:00.0", "0000:01:00.1"]
[[group]]
id = 2
iommu = "dmar0"
devices = ["0000:01:01.0"]
[[group]]
id = 3
iommu = "dmar0"
devices = [{ bdf = "0000:02:00.0", hot_reset = "none" }]
[[group]]
id = 4
iommu = "dmar0"
devices = ["0000:02:01.0"]
[[group]]
id = 5
iommu = "dmar0"
devices = [{ bdf = "0000:03:00.0", hot_reset = "slot" }]
[[group]]
id = 6
iommu = "dmar0"
devices = [{ bdf = "0000:03:00.1", hot_reset = "slot" }]
[[group]]
id = 7
iommu = "dmar0"
devices = ["0000:03:01.0"]
[[group]]
id = 8
iommu = "dmar0"
devices = [{ bdf = "0000:00:08.0", fail_reset = true }]
)";

Topology machine() {
  std::string error;
  auto t = Topology::parse(kMachine, &error);
  INFO(error);
  REQUIRE(t.has_value());
  return std::move(*t);
}

// A group-path device fd (GET_DEVICE_FD as `vfio-emu run` builds it) on a type1 container.
struct GroupDevice {
  int group = -1;
  int dev = -1;
};
// GET_DEVICE_FD as the supervisor does it, on a group in a container.
int device_of_group(Harness& h, int group, const char* bdf) {
  const long n = h.ioctl(group, VFIO_EMU_GROUP_DEVICE, bdf);
  REQUIRE(n >= 0);
  const int dev = h.open("vfio/devices/vfio" + std::to_string(n));
  REQUIRE(dev >= 0);
  REQUIRE(h.ioctl(dev, VFIO_EMU_DEVICE_USE_GROUP, static_cast<u64>(group)) == 0);
  return dev;
}

GroupDevice open_group_device(Harness& h, int container, u32 group, const char* bdf) {
  GroupDevice g;
  g.group = h.open("vfio/" + std::to_string(group));
  REQUIRE(g.group >= 0);
  REQUIRE(h.ioctl(g.group, VFIO_GROUP_SET_CONTAINER, &container) == 0);
  g.dev = device_of_group(h, g.group, bdf);
  return g;
}

int type1_container(Harness& h, u32 first_group, const char* bdf, GroupDevice* out) {
  const int c = h.open("vfio/vfio");
  REQUIRE(c >= 0);
  out->group = h.open("vfio/" + std::to_string(first_group));
  REQUIRE(h.ioctl(out->group, VFIO_GROUP_SET_CONTAINER, &c) == 0);
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  out->dev = device_of_group(h, out->group, bdf);
  return c;
}

// vfio_pci_hot_reset_info and vfio_pci_hot_reset with room for their arrays.
struct Info {
  u32 argsz, flags, count;
  vfio_pci_dependent_device devices[8];
};
static_assert(offsetof(Info, devices) == sizeof(vfio_pci_hot_reset_info));

struct Reset {
  u32 argsz, flags, count;
  std::int32_t fds[8];
};
static_assert(offsetof(Reset, fds) == offsetof(vfio_pci_hot_reset, group_fds));

int hot_reset(Harness& h, int dev, std::vector<int> fds, u32 flags = 0) {
  Reset r{};
  r.argsz = static_cast<u32>(12 + fds.size() * 4);
  r.flags = flags;
  r.count = static_cast<u32>(fds.size());
  for (size_t i = 0; i < fds.size(); ++i) r.fds[i] = fds[i];
  return h.fails(dev, VFIO_DEVICE_PCI_HOT_RESET, &r);
}

// The first byte of BAR0 (testdev: plain memory, zero after a reset; config space is kept).
u8 bar0_byte(Harness& h, int dev) {
  u8 v = 0xaa;
  REQUIRE(h.pread(dev, &v, 1, vfio_pci_index_to_offset(VFIO_PCI_BAR0_REGION_INDEX)) == 1);
  return v;
}
void set_bar0_byte(Harness& h, int dev, u8 v) {
  REQUIRE(h.pwrite(dev, &v, 1, vfio_pci_index_to_offset(VFIO_PCI_BAR0_REGION_INDEX)) == 1);
}

}  // namespace

TEST_CASE("hot reset: the scope of a slot or bus reset", "[hotreset]") {
  Harness h(machine());
  auto scope = [&](const char* bdf) {
    for (const auto& g : h.emu.groups())
      if (Device* d = g->device_by_name(bdf)) return hot_reset_scope(h.emu, *d);
    FAIL(bdf);
    return ResetScope{};
  };
  auto names = [](const ResetScope& s) {
    std::vector<std::string> v;
    for (const Device* d : s.devices) v.push_back(d->spec().bdf);
    return v;
  };
  CHECK(scope("0000:01:00.1").kind == ResetScopeKind::kBus);
  CHECK(names(scope("0000:01:01.0")) ==
        std::vector<std::string>{"0000:01:00.0", "0000:01:00.1", "0000:01:01.0"});
  CHECK(scope("0000:02:00.0").kind == ResetScopeKind::kNone);  // refuses bus resets
  CHECK(scope("0000:02:01.0").kind == ResetScopeKind::kNone);  // its neighbour refuses
  CHECK(scope("0000:03:00.1").kind == ResetScopeKind::kSlot);
  CHECK(names(scope("0000:03:00.1")) == std::vector<std::string>{"0000:03:00.0", "0000:03:00.1"});
  // 03:01.0 is no slot of its own: a bus reset, which takes the hotplug slot's functions too.
  CHECK(names(scope("0000:03:01.0")).size() == 3);
  CHECK(scope("0000:00:08.0").kind == ResetScopeKind::kNone);  // root bus: no bridge
}

TEST_CASE("hot reset: the topology's hot_reset key", "[hotreset][topology]") {
  std::string error;
  auto parse = [&](const std::string& devices) {
    error.clear();
    return Topology::parse("[[iommu]]\nname = \"u\"\nmodel = \"vtd\"\n[[group]]\nid = 1\n"
                           "iommu = \"u\"\ndevices = " + devices + "\n", &error).has_value();
  };
  CHECK(parse(R"([{ bdf = "0000:01:00.0", hot_reset = "slot" }])"));
  CHECK_FALSE(parse(R"([{ bdf = "0000:01:00.0", hot_reset = "bus" }])"));
  CHECK(error.find("'hot_reset' must be") != std::string::npos);
  // The functions of a slot agree.
  CHECK_FALSE(parse(R"([{ bdf = "0000:01:00.0", hot_reset = "slot" }, "0000:01:00.1"])"));
  CHECK(error.find("for every function of its slot") != std::string::npos);
  CHECK(parse(R"([{ bdf = "0000:01:00.0", hot_reset = "slot" }, "0000:01:01.0"])"));
  // A PCI device number has 5 bits.
  CHECK_FALSE(parse(R"(["0000:01:20.0"])"));
  CHECK(parse(R"(["0000:01:1f.7"])"));
}

TEST_CASE("hot reset: GET_PCI_HOT_RESET_INFO, group path", "[hotreset]") {
  Harness h(machine());
  GroupDevice d1;
  const int c = type1_container(h, 1, "0000:01:00.1", &d1);

  Info info{};
  info.argsz = 11;  // below offsetofend(count)
  CHECK(h.fails(d1.dev, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &info) == EINVAL);
  CHECK(h.fails(d1.dev, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, u64{8}) == EFAULT);

  // Room for none of the three: ENOSPC, with count and flags 0 written back.
  info = {};
  info.argsz = 12 + 2 * 8;
  info.flags = 0x55;
  CHECK(h.fails(d1.dev, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &info) == ENOSPC);
  CHECK(info.count == 3);
  CHECK(info.flags == 0);
  CHECK(info.argsz == 12 + 2 * 8);

  info = {};
  info.argsz = sizeof(info);
  REQUIRE(h.ioctl(d1.dev, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &info) == 0);
  CHECK(info.flags == 0);
  REQUIRE(info.count == 3);
  const u32 groups[] = {1, 1, 2};
  const u8 devfns[] = {0x00, 0x01, 0x08};
  for (int i = 0; i < 3; ++i) {
    CHECK(info.devices[i].group_id == groups[i]);
    CHECK(info.devices[i].segment == 0);
    CHECK(info.devices[i].bus == 1);
    CHECK(info.devices[i].devfn == devfns[i]);
  }

  // A device without a slot or bus reset.
  GroupDevice d3 = open_group_device(h, c, 3, "0000:02:00.0");
  info = {};
  info.argsz = sizeof(info);
  CHECK(h.fails(d3.dev, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &info) == ENODEV);
}

TEST_CASE("hot reset: PCI_HOT_RESET with group fds", "[hotreset]") {
  Harness h(machine());
  GroupDevice d1;
  const int c = type1_container(h, 1, "0000:01:00.0", &d1);
  GroupDevice d2 = open_group_device(h, c, 2, "0000:01:01.0");
  set_bar0_byte(h, d1.dev, 0x06);
  set_bar0_byte(h, d2.dev, 0x06);
  REQUIRE(bar0_byte(h, d1.dev) == 0x06);

  // Checks in Linux's order.
  Reset r{};
  r.argsz = 11;
  CHECK(h.fails(d1.dev, VFIO_DEVICE_PCI_HOT_RESET, &r) == EINVAL);       // argsz
  CHECK(hot_reset(h, d1.dev, {d1.group, d2.group}, 1) == EINVAL);        // flags
  CHECK(hot_reset(h, d1.dev, {}) == EINVAL);        // count 0 is for cdev-bound devices
  CHECK(hot_reset(h, d1.dev, {d1.group, d2.group, d1.group, d2.group}) == EINVAL);  // 4 > 3
  r = {};
  r.argsz = 12;
  r.count = 1;  // the fd array is not there
  CHECK(h.fails(d1.dev, VFIO_DEVICE_PCI_HOT_RESET, u64{0x10}) == EFAULT);
  CHECK(hot_reset(h, d1.dev, {d1.group, 4242}) == EBADF);
  CHECK(hot_reset(h, d1.dev, {d1.group, c}) == EINVAL);               // a container
  CHECK(hot_reset(h, d1.dev, {h.foreign_fd(), d1.group}) == EINVAL);  // not a VFIO file
  // Group 2's device is reset too: without its group the caller does not own it.
  CHECK(hot_reset(h, d1.dev, {d1.group}) == EINVAL);
  CHECK(bar0_byte(h, d1.dev) == 0x06);  // nothing was reset
  CHECK(bar0_byte(h, d2.dev) == 0x06);

  REQUIRE(hot_reset(h, d1.dev, {d2.group, d1.group}) == 0);
  CHECK(bar0_byte(h, d1.dev) == 0);  // every function of the bus was reset
  CHECK(bar0_byte(h, d2.dev) == 0);
  // A group that is not open as a device fd still proves ownership: reset from group 2's device.
  set_bar0_byte(h, d1.dev, 0x02);
  REQUIRE(hot_reset(h, d2.dev, {d1.group, d2.group}) == 0);
  CHECK(bar0_byte(h, d1.dev) == 0);
}

TEST_CASE("hot reset: a function whose reset fails is left in a bad state", "[hotreset]") {
  std::string error;
  auto t = Topology::parse(R"(
[[iommu]]
name = "u"
model = "vtd"
[[group]]
id = 1
iommu = "u"
devices = ["0000:05:00.0", { bdf = "0000:05:01.0", fail_reset = true }]
)", &error);
  REQUIRE(t.has_value());
  Harness h(std::move(*t));
  GroupDevice d;
  type1_container(h, 1, "0000:05:00.0", &d);
  set_bar0_byte(h, d.dev, 0x06);
  CHECK(hot_reset(h, d.dev, {d.group}) == EIO);
  CHECK(bar0_byte(h, d.dev) == 0);  // the other function was reset
  // The failed one cannot be opened any more.
  CHECK(h.ioctl(d.group, VFIO_EMU_GROUP_DEVICE, "0000:05:01.0") >= 0);
  const int bad = h.open("vfio/devices/vfio1");
  CHECK(h.fails(bad, VFIO_EMU_DEVICE_USE_GROUP, static_cast<u64>(d.group)) == EIO);
}

TEST_CASE("hot reset: cdev-bound devices prove ownership through their iommufd", "[hotreset]") {
  Harness h(machine());
  const int iommufd = h.open("iommu");
  auto bind = [&](const char* cdev) {
    const int dev = h.open(cdev);
    REQUIRE(dev >= 0);
    vfio_device_bind_iommufd b{};
    b.argsz = sizeof(b);
    b.iommufd = iommufd;
    REQUIRE(h.ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &b) == 0);
    return std::pair{dev, b.out_devid};
  };
  const auto [dev0, devid0] = bind("vfio/devices/vfio0");  // 01:00.0, group 1

  Info info{};
  info.argsz = sizeof(info);
  REQUIRE(h.ioctl(dev0, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &info) == 0);
  CHECK(info.flags == VFIO_PCI_HOT_RESET_FLAG_DEV_ID);  // 01:01.0 is not owned
  REQUIRE(info.count == 3);
  CHECK(info.devices[0].devid == devid0);
  CHECK(info.devices[1].devid == VFIO_PCI_DEVID_OWNED);  // 01:00.1: its group is bound
  CHECK(info.devices[2].devid == static_cast<u32>(VFIO_PCI_DEVID_NOT_OWNED));

  const int g2 = h.open("vfio/2");
  CHECK(hot_reset(h, dev0, {g2}) == EINVAL);  // a cdev-bound device passes no groups
  CHECK(hot_reset(h, dev0, {}) == EINVAL);    // 01:01.0 is not owned
  h.close(g2);

  // Another iommufd does not own it either.
  const int other = h.open("iommu");
  const int dev2 = h.open("vfio/devices/vfio2");  // 01:01.0
  vfio_device_bind_iommufd b{};
  b.argsz = sizeof(b);
  b.iommufd = other;
  REQUIRE(h.ioctl(dev2, VFIO_DEVICE_BIND_IOMMUFD, &b) == 0);
  CHECK(hot_reset(h, dev0, {}) == EINVAL);
  h.close(dev2);
  h.close(other);

  const auto [dev2b, devid2] = bind("vfio/devices/vfio2");
  info = {};
  info.argsz = sizeof(info);
  REQUIRE(h.ioctl(dev0, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &info) == 0);
  CHECK(info.flags == (VFIO_PCI_HOT_RESET_FLAG_DEV_ID | VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED));
  CHECK(info.devices[2].devid == devid2);

  set_bar0_byte(h, dev2b, 0x06);
  REQUIRE(hot_reset(h, dev0, {}) == 0);
  CHECK(bar0_byte(h, dev2b) == 0);
}

TEST_CASE("hot reset: the built-in machine's devices sit on root buses", "[hotreset]") {
  Harness h;
  const int dev = h.open("vfio/devices/vfio0");
  const int iommufd = h.open("iommu");
  vfio_device_bind_iommufd b{};
  b.argsz = sizeof(b);
  b.iommufd = iommufd;
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &b) == 0);
  Info info{};
  info.argsz = sizeof(info);
  CHECK(h.fails(dev, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &info) == ENODEV);
  CHECK(hot_reset(h, dev, {}) == ENODEV);
  CHECK(hot_reset(h, dev, {iommufd}) == EINVAL);  // the count check comes first
}
