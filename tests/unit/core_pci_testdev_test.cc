// A pci-testdev function (devices/pci_testdev/) as vfio-pci presents it: what core derives from
// the model (no VFIO_DEVICE_FLAGS_RESET and VFIO_DEVICE_RESET EINVAL, an I/O BAR1 that is
// never mappable and not gated by memory decoding, INTx count 0 without an interrupt pin, the
// command register after the first open), next to a testdev whose answers do not change.
#include <catch2/catch.hpp>

#include <cstring>

#include "core/node_type.h"
#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"
#include "tests/unit/core_harness.h"
#include "tests/unit/iommufd/iommufd_helpers.h"

using namespace vfio_emu;
using namespace vfio_emu::core;
using namespace vfio_emu::uapi;
using vfio_emu::test::Harness;

namespace {

// 00:01.0 is the pci-testdev (vfio0), as in the oracle's VM; 00:02.0 a testdev (vfio1).
constexpr const char* kMachine = R"(
[[iommu]]
name = "dmar0"
model = "vtd"
[[group]]
id = 1
iommu = "dmar0"
devices = [{ bdf = "0000:00:01.0", model = "pci-testdev", fail_reset = true }]
[[group]]
id = 2
iommu = "dmar0"
devices = ["0000:00:02.0"]
)";

vfio_region_info region(Harness& h, int dev, u32 index) {
  vfio_region_info r{};
  r.argsz = sizeof(r);
  r.index = index;
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &r) == 0);
  return r;
}

vfio_irq_info irq(Harness& h, int dev, u32 index) {
  vfio_irq_info i{};
  i.argsz = sizeof(i);
  i.index = index;
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_GET_IRQ_INFO, &i) == 0);
  return i;
}

u32 device_flags(Harness& h, int dev) {
  vfio_device_info info{};
  info.argsz = sizeof(info);
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_GET_INFO, &info) == 0);
  return info.flags;
}

long cfg_read(Harness& h, int dev, u64 off, u32 len, u32* v) {
  *v = 0;
  return h.pread(dev, v, len, vfio_pci_index_to_offset(VFIO_PCI_CONFIG_REGION_INDEX) + off);
}

long cfg_write(Harness& h, int dev, u64 off, u32 len, u32 v) {
  return h.pwrite(dev, &v, len, vfio_pci_index_to_offset(VFIO_PCI_CONFIG_REGION_INDEX) + off);
}

u64 bar(u32 n) { return vfio_pci_index_to_offset(VFIO_PCI_BAR0_REGION_INDEX + n); }

}  // namespace

TEST_CASE("pci-testdev: device info, regions, IRQs and reset as Linux gives them",
          "[pci-testdev]") {
  Harness h(test::parse_topology(kMachine));
  int iommufd = -1;
  const int dev = test::bound_device(h, "vfio/devices/vfio0", &iommufd);

  CHECK(device_flags(h, dev) == VFIO_DEVICE_FLAGS_PCI);  // no reset method: no RESET flag
  // !reset_works is checked first: EINVAL, not the fault injection's EIO.
  CHECK(h.fails(dev, VFIO_DEVICE_RESET) == EINVAL);

  const auto r0 = region(h, dev, VFIO_PCI_BAR0_REGION_INDEX);
  CHECK(r0.size == 0x1000);
  CHECK(r0.flags == (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE));  // no mmap here
  const auto r1 = region(h, dev, VFIO_PCI_BAR1_REGION_INDEX);
  CHECK(r1.size == 0x100);
  CHECK(r1.offset == bar(1));
  CHECK(r1.flags == (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE));
  for (u32 i = VFIO_PCI_BAR2_REGION_INDEX; i <= VFIO_PCI_BAR5_REGION_INDEX; ++i) {
    CHECK(region(h, dev, i).size == 0);
    CHECK(region(h, dev, i).flags == 0);
  }

  const auto intx = irq(h, dev, VFIO_PCI_INTX_IRQ_INDEX);  // interrupt pin 0
  CHECK(intx.count == 0);
  CHECK(intx.flags == (VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED));
  CHECK(irq(h, dev, VFIO_PCI_MSI_IRQ_INDEX).count == 0);
  CHECK(irq(h, dev, VFIO_PCI_MSIX_IRQ_INDEX).count == 0);
  {
    vfio_irq_set s{};
    s.argsz = sizeof(s);
    s.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
    s.index = VFIO_PCI_INTX_IRQ_INDEX;
    s.count = 1;
    CHECK(h.fails(dev, VFIO_DEVICE_SET_IRQS, &s) == EINVAL);
  }

  // Config space: QEMU's ids, and the first open enabled I/O and memory decoding.
  u32 v;
  REQUIRE(cfg_read(h, dev, 0x00, 4, &v) == 4);
  CHECK(v == 0x00051b36);
  REQUIRE(cfg_read(h, dev, 0x04, 2, &v) == 2);
  CHECK(v == 0x0003);
  REQUIRE(cfg_read(h, dev, 0x08, 4, &v) == 4);
  CHECK(v == 0x00ff0000);
  REQUIRE(cfg_read(h, dev, 0x2c, 4, &v) == 4);
  CHECK(v == 0x11001af4);
  REQUIRE(cfg_read(h, dev, 0x3d, 1, &v) == 1);
  CHECK(v == 0);
  REQUIRE(cfg_write(h, dev, 0x14, 4, 0xffffffff) == 4);
  REQUIRE(cfg_read(h, dev, 0x14, 4, &v) == 4);
  CHECK(v == 0xffffff01);
  REQUIRE(cfg_write(h, dev, 0x10, 4, 0xffffffff) == 4);
  REQUIRE(cfg_read(h, dev, 0x10, 4, &v) == 4);
  CHECK(v == 0xfffff000);
}

TEST_CASE("pci-testdev: the BARs through pread and pwrite", "[pci-testdev]") {
  Harness h(test::parse_topology(kMachine));
  int iommufd = -1;
  const int dev = test::bound_device(h, "vfio/devices/vfio0", &iommufd);
  const u8 zero = 0, datamatch = 0xFA;
  REQUIRE(h.pwrite(dev, &zero, 1, bar(0)) == 1);  // test 0: mmio-no-eventfd
  char name[16] = {};
  REQUIRE(h.pread(dev, name, 15, bar(0) + 16) == 15);
  CHECK(std::string(name) == "mmio-no-eventfd");
  REQUIRE(h.pwrite(dev, &datamatch, 1, bar(0) + 2048) == 1);
  u32 count = 0;
  REQUIRE(h.pread(dev, &count, 4, bar(0) + 12) == 4);
  CHECK(count == 1);
  // Cut at the BAR's end; past it EINVAL, as vfio_pci_bar_rw.
  u8 buf[16];
  CHECK(h.pread(dev, buf, 16, bar(0) + 0xff8) == 8);
  CHECK(h.pread(dev, buf, 16, bar(1) + 0xf8) == 8);
  errno = 0;
  CHECK(h.pread(dev, buf, 1, bar(1) + 0x100) == -1);
  CHECK(errno == EINVAL);
  errno = 0;
  CHECK(h.pread(dev, buf, 1, bar(2)) == -1);
  CHECK(errno == EINVAL);

  // Memory decoding off: BAR0 does not answer (EIO), the I/O BAR1 still does.
  REQUIRE(cfg_write(h, dev, 0x04, 2, 0x0001) == 2);
  errno = 0;
  CHECK(h.pread(dev, buf, 4, bar(0)) == -1);
  CHECK(errno == EIO);
  REQUIRE(h.pwrite(dev, &zero, 1, bar(1)) == 1);  // test 3: portio-no-eventfd
  u8 test = 0xff;
  REQUIRE(h.pread(dev, &test, 1, bar(1)) == 1);
  CHECK(test == 3);
  REQUIRE(cfg_write(h, dev, 0x04, 2, 0x0000) == 2);  // I/O decoding off too: still no check
  CHECK(h.pread(dev, &test, 1, bar(1)) == 1);
}

TEST_CASE("pci-testdev: BAR0 is mappable, the I/O BAR1 never", "[pci-testdev]") {
  Harness h(test::parse_topology(kMachine));
  REQUIRE(enable_bar_mmap(h.emu).ok());
  int iommufd = -1;
  const int dev = test::bound_device(h, "vfio/devices/vfio0", &iommufd);
  CHECK(region(h, dev, VFIO_PCI_BAR0_REGION_INDEX).flags ==
        (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP));
  CHECK(region(h, dev, VFIO_PCI_BAR1_REGION_INDEX).flags ==
        (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE));
}

TEST_CASE("pci-testdev: a testdev beside it keeps its reset, INTx and command register",
          "[pci-testdev]") {
  Harness h(test::parse_topology(kMachine));
  int iommufd = -1;
  const int dev = test::bound_device(h, "vfio/devices/vfio1", &iommufd);
  CHECK(device_flags(h, dev) == (VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET));
  CHECK(h.ioctl(dev, VFIO_DEVICE_RESET) == 0);
  CHECK(irq(h, dev, VFIO_PCI_INTX_IRQ_INDEX).count == 1);
  CHECK(region(h, dev, VFIO_PCI_BAR1_REGION_INDEX).size == 0);
  u32 v;
  REQUIRE(cfg_read(h, dev, 0x04, 2, &v) == 2);
  CHECK(v == 0x0002);
}

TEST_CASE("pci-testdev: the topology names the model; unknown models list it",
          "[pci-testdev][topology]") {
  std::string error;
  CHECK_FALSE(Topology::parse(R"(
[[iommu]]
name = "u"
model = "vtd"
[[group]]
id = 1
iommu = "u"
devices = [{ bdf = "0000:00:01.0", model = "pci-testdevice" }]
)", &error).has_value());
  CHECK(error.find("pci-testdev") != std::string::npos);
  auto t = Topology::parse(kMachine, &error);
  REQUIRE(t.has_value());
  CHECK(t->groups[0].devices[0].model == "pci-testdev");
}
