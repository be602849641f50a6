// The VFIO device cdev: BIND_IOMMUFD in the order of shared/spec §5.10, ATTACH/DETACH_IOMMUFD_PT,
// the vfio-pci information ioctls, RESET, pread/pwrite of config space and BAR0, the §7.3 example
// flow end to end, and what closing the device fd undoes.
#include <sys/mman.h>

#include <cstring>
#include <vector>

#include "core/node_type.h"
#include "tests/unit/iommufd/iommufd_helpers.h"

using namespace vfio_emu;
using namespace vfio_emu::test;

namespace {

constexpr u64 kConfig = u64{VFIO_PCI_CONFIG_REGION_INDEX} << 40;
constexpr u64 kBar0 = 0;

vfio_group_status group_status(Harness& h, int g) {
  vfio_group_status s{sizeof(s), 0};
  REQUIRE(h.ioctl(g, VFIO_GROUP_GET_STATUS, &s) == 0);
  return s;
}

int bind_raw(Harness& h, int dev, vfio_device_bind_iommufd* b) {
  return h.fails(dev, VFIO_DEVICE_BIND_IOMMUFD, b);
}

}  // namespace

// ---- §7.3 --------------------------------------------------------------------------------------

TEST_CASE("cdev: the vfio.rst cdev + iommufd example flow", "[cdev][flow]") {
  Harness h;
  // 1-2. open the cdev and /dev/iommu.
  const int dev = h.open("vfio/devices/vfio0");
  const int fd = h.open("iommu");
  REQUIRE(dev >= 0);
  REQUIRE(fd >= 0);
  // 3. bind.
  vfio_device_bind_iommufd b{};
  b.argsz = sizeof(b);
  b.iommufd = fd;
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &b) == 0);
  CHECK(b.out_devid >= 1);
  // 4. IOAS_ALLOC.
  iommu_ioas_alloc alloc{12, 0, 0};
  REQUIRE(h.ioctl(fd, IOMMU_IOAS_ALLOC, &alloc) == 0);
  CHECK(alloc.out_ioas_id >= 1);
  // 5. attach the device to the IOAS: pt_id comes back as the HWPT's id.
  vfio_device_attach_iommufd_pt at{};
  at.argsz = sizeof(at);
  at.pt_id = alloc.out_ioas_id;
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == 0);
  CHECK(at.pt_id != alloc.out_ioas_id);
  // 6. map 1 MiB at IOVA 0.
  Buffer buf(1 << 20);
  iommu_ioas_map map{};
  map.size = 40;
  map.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA;
  map.ioas_id = alloc.out_ioas_id;
  map.user_va = buf.addr();
  map.iova = 0;
  map.length = 1 << 20;
  REQUIRE(h.ioctl(fd, IOMMU_IOAS_MAP, &map) == 0);
  CHECK(map.iova == 0);
  // The device's DMA now reaches the buffer.
  for (u64 off : {u64{0}, u64{0x1234}, u64{(1 << 20) - 1}}) {
    auto t = translate(h, off, iommu::Access::kWrite);
    REQUIRE(t.ok());
    CHECK(t.output == buf.addr() + off);
  }
  CHECK(translate(h, 1 << 20).fault == iommu::FaultReason::kNotPresent);
  // 7. the usual device operations, then unmap-all.
  vfio_device_info info{};
  info.argsz = sizeof(info);
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_GET_INFO, &info) == 0);
  for (u32 i = 0; i < info.num_regions; ++i) {
    vfio_region_info r{};
    r.argsz = sizeof(r);
    r.index = i;
    const int e = h.fails(dev, VFIO_DEVICE_GET_REGION_INFO, &r);
    CHECK(e == (i == VFIO_PCI_VGA_REGION_INDEX ? EINVAL : 0));
  }
  for (u32 i = 0; i < info.num_irqs; ++i) {
    vfio_irq_info q{};
    q.argsz = sizeof(q);
    q.index = i;
    CHECK(h.fails(dev, VFIO_DEVICE_GET_IRQ_INFO, &q) == 0);
  }
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_RESET) == 0);
  iommu_ioas_unmap un{sizeof(un), alloc.out_ioas_id, 0, kMax};
  REQUIRE(h.ioctl(fd, IOMMU_IOAS_UNMAP, &un) == 0);
  CHECK(un.length == 1 << 20);
  CHECK(translate(h, 0).fault == iommu::FaultReason::kNotPresent);
  REQUIRE(h.close(dev) == 0);
  REQUIRE(h.close(fd) == 0);
  CHECK(domains(h).empty());
  CHECK(user_locked(h) == 0);
}

// ---- before BIND -------------------------------------------------------------------------------

TEST_CASE("cdev: before BIND every ioctl and read/write is EINVAL", "[cdev][bind]") {
  Harness h;
  const int dev = h.open("vfio/devices/vfio0");
  vfio_device_info info{};
  info.argsz = sizeof(info);
  CHECK(h.fails(dev, VFIO_DEVICE_GET_INFO, &info) == EINVAL);
  CHECK(h.fails(dev, VFIO_DEVICE_RESET) == EINVAL);
  vfio_device_attach_iommufd_pt at{sizeof(at), 0, 1, 0};
  CHECK(h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == EINVAL);
  CHECK(h.fails(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &at) == EINVAL);
  CHECK(h.fails(dev, vfio_io(60)) == EINVAL);  // even an unknown one
  u8 b[4];
  CHECK(h.pread(dev, b, 4, kConfig) == -1);
  CHECK(errno == EINVAL);
  CHECK(h.pwrite(dev, b, 4, kBar0) == -1);
  CHECK(errno == EINVAL);
  // After BIND an unknown ioctl is ENOTTY.
  const int fd = h.open("iommu");
  REQUIRE(bind(h, dev, fd) == 0);
  CHECK(h.fails(dev, vfio_io(60)) == ENOTTY);
}

// ---- BIND --------------------------------------------------------------------------------------

TEST_CASE("cdev: BIND argument checks", "[cdev][bind]") {
  Harness h;
  const int dev = h.open("vfio/devices/vfio0");
  const int fd = h.open("iommu");
  CHECK(h.fails(dev, VFIO_DEVICE_BIND_IOMMUFD, u64{0x10}) == EFAULT);
  struct {
    vfio_device_bind_iommufd b;
    u8 tail[8];
  } big{};
  big.b.argsz = 15;
  big.b.iommufd = fd;
  CHECK(bind_raw(h, dev, &big.b) == EINVAL);
  big.b.argsz = sizeof(big);
  big.tail[7] = 1;
  CHECK(bind_raw(h, dev, &big.b) == E2BIG);
  big.tail[7] = 0;
  big.b.flags = 2;
  CHECK(bind_raw(h, dev, &big.b) == EINVAL);
  big.b.flags = 0;
  big.b.iommufd = -1;
  CHECK(bind_raw(h, dev, &big.b) == EINVAL);
  // A 16-byte struct (Linux 6.6) and one whose token_uuid_ptr is set without the flag: ignored.
  vfio_device_bind_iommufd b16{};
  b16.argsz = 16;
  b16.iommufd = fd;
  b16.token_uuid_ptr = 0x1234;
  REQUIRE(bind_raw(h, dev, &b16) == 0);
  CHECK(b16.out_devid == 1);
}

TEST_CASE("cdev: BIND errors in Linux's order", "[cdev][bind]") {
  Harness h;
  const int fd = h.open("iommu");
  const int container = h.open("vfio/vfio");
  vfio_device_bind_iommufd b{};
  b.argsz = sizeof(b);

  SECTION("the group is open: EBUSY before everything after the argument checks") {
    const int g = h.open("vfio/1");
    const int dev = h.open("vfio/devices/vfio0");
    REQUIRE(g >= 0);
    REQUIRE(dev >= 0);
    b.iommufd = 9999;  // not even an fd
    b.flags = VFIO_DEVICE_BIND_FLAG_TOKEN;
    b.token_uuid_ptr = 0x10;
    CHECK(bind_raw(h, dev, &b) == EBUSY);
    REQUIRE(h.close(g) == 0);
    CHECK(bind_raw(h, dev, &b) == EFAULT);  // the token comes next
  }
  SECTION("already bound: EINVAL before the token and the fd") {
    const int dev = h.open("vfio/devices/vfio0");
    REQUIRE(bind(h, dev, fd) == 0);
    b.iommufd = 9999;
    b.flags = VFIO_DEVICE_BIND_FLAG_TOKEN;
    CHECK(bind_raw(h, dev, &b) == EINVAL);
  }
  SECTION("the token: EFAULT to read it, then EINVAL (not a PF or VF), before the fd") {
    const int dev = h.open("vfio/devices/vfio0");
    u8 uuid[16] = {1};
    b.iommufd = 9999;
    b.flags = VFIO_DEVICE_BIND_FLAG_TOKEN;
    b.token_uuid_ptr = 0x10;
    CHECK(bind_raw(h, dev, &b) == EFAULT);
    b.token_uuid_ptr = reinterpret_cast<u64>(uuid);
    CHECK(bind_raw(h, dev, &b) == EINVAL);
  }
  SECTION("the fd: EBADF, then EBADFD for anything but an iommufd") {
    const int dev = h.open("vfio/devices/vfio0");
    b.iommufd = 9999;
    CHECK(bind_raw(h, dev, &b) == EBADF);
    b.iommufd = h.foreign_fd();
    CHECK(bind_raw(h, dev, &b) == EBADFD);
    b.iommufd = container;
    CHECK(bind_raw(h, dev, &b) == EBADFD);
    b.iommufd = dev;
    CHECK(bind_raw(h, dev, &b) == EBADFD);
    b.iommufd = h.dup(fd);
    REQUIRE(bind_raw(h, dev, &b) == 0);
  }
  SECTION("the device is bound through another cdev fd: EINVAL after the fd checks") {
    const int dev = h.open("vfio/devices/vfio0");
    const int dev2 = h.open("vfio/devices/vfio0");
    REQUIRE(bind(h, dev, fd) == 0);
    b.iommufd = 9999;
    CHECK(bind_raw(h, dev2, &b) == EBADF);
    b.iommufd = fd;
    CHECK(bind_raw(h, dev2, &b) == EINVAL);
    const int fd2 = h.open("iommu");
    b.iommufd = fd2;
    CHECK(bind_raw(h, dev2, &b) == EINVAL);
    REQUIRE(h.close(dev) == 0);  // unbinds
    CHECK(bind_raw(h, dev2, &b) == 0);
  }
}

TEST_CASE("cdev: a bound device makes its group non-viable and blocks the group",
          "[cdev][bind]") {
  Harness h;
  const int g = h.open("vfio/1");
  CHECK(group_status(h, g).flags == VFIO_GROUP_FLAGS_VIABLE);
  REQUIRE(h.close(g) == 0);
  const int dev = h.open("vfio/devices/vfio0");
  const int fd = h.open("iommu");
  // An open but unbound cdev does not block the group (cdev_device_open_cnt rises at BIND).
  const int g1 = h.open("vfio/1");
  REQUIRE(g1 >= 0);
  REQUIRE(h.close(g1) == 0);
  REQUIRE(bind(h, dev, fd) == 0);
  CHECK(h.open("vfio/1") == -1);  // a device of the group is bound through its cdev
  CHECK(errno == EBUSY);
  auto& d = *h.emu.device_by_cdev(0);
  CHECK(d.bound_file != nullptr);
  REQUIRE(h.close(dev) == 0);
  CHECK(d.bound_file == nullptr);
  const int g2 = h.open("vfio/1");
  REQUIRE(g2 >= 0);
  CHECK(group_status(h, g2).flags == VFIO_GROUP_FLAGS_VIABLE);
}

TEST_CASE("cdev: devices of one group bind to one iommufd (EPERM), share its HWPT",
          "[cdev][bind][group]") {
  Harness h(parse_topology(R"(
[[iommu]]
name = "dmar0"
model = "vtd"
[[group]]
id = 7
iommu = "dmar0"
devices = ["0000:00:01.0", "0000:00:01.1"]
)"));
  const int a = h.open("vfio/devices/vfio0");
  const int b = h.open("vfio/devices/vfio1");
  const int fd1 = h.open("iommu");
  const int fd2 = h.open("iommu");
  REQUIRE(bind(h, a, fd1) == 0);
  CHECK(bind(h, b, fd2) == EPERM);  // the group's DMA belongs to fd1's context
  REQUIRE(bind(h, b, fd1) == 0);
  const u32 ioas1 = ioas_alloc(h, fd1);
  const u32 ioas2 = ioas_alloc(h, fd1);
  u32 ha = 0, hb = 0;
  REQUIRE(attach(h, a, ioas1, &ha) == 0);
  CHECK(attach(h, b, ioas2) == EINVAL);  // the group is attached to ha
  REQUIRE(attach(h, b, ioas1, &hb) == 0);
  CHECK(ha == hb);
  // A replace moves the whole group.
  u32 moved = 0;
  REQUIRE(attach(h, a, ioas2, &moved) == 0);
  CHECK(moved != ha);
  CHECK(domains(h).size() == 1);
  REQUIRE(detach(h, a) == 0);
  REQUIRE(detach(h, b) == 0);
  CHECK(domains(h).empty());
}

TEST_CASE("cdev: a device in a bad state cannot be bound (EIO)", "[cdev][bind][reset]") {
  Harness h(parse_topology(R"(
[[iommu]]
name = "dmar0"
model = "vtd"
[[group]]
id = 1
iommu = "dmar0"
devices = [{ bdf = "0000:00:01.0", fail_reset = true }]
)"));
  const int fd = h.open("iommu");
  const int dev = h.open("vfio/devices/vfio0");
  REQUIRE(bind(h, dev, fd) == 0);
  CHECK(h.fails(dev, VFIO_DEVICE_RESET) == EIO);
  CHECK(h.emu.device_by_cdev(0)->bad_state);
  REQUIRE(h.close(dev) == 0);
  const int dev2 = h.open("vfio/devices/vfio0");
  CHECK(bind(h, dev2, fd) == EIO);
  // The argument and fd checks come first.
  CHECK(bind(h, dev2, 9999) == EBADF);
}

// ---- ATTACH / DETACH ---------------------------------------------------------------------------

TEST_CASE("cdev: ATTACH_IOMMUFD_PT errors", "[cdev][attach]") {
  Harness h;
  const int fd = h.open("iommu");
  const int dev = h.open("vfio/devices/vfio0");
  u32 devid = 0;
  REQUIRE(bind(h, dev, fd, &devid) == 0);
  const u32 ioas = ioas_alloc(h, fd);
  vfio_device_attach_iommufd_pt at{};
  at.argsz = 11;
  at.pt_id = ioas;
  CHECK(h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == EINVAL);
  CHECK(h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, u64{0x10}) == EFAULT);
  at.argsz = 12;
  at.flags = 2;
  CHECK(h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == EINVAL);
  // PASID (vfio-pci has pasid_attach_ioas): argsz must reach `pasid`; the PASID must fit the
  // ida; the object must exist; then no domain is PASID-compatible for a device without the
  // PASID capability (iommufd_hwpt_pasid_compat), as Linux 7.3 answers for pci-testdev.
  at.flags = VFIO_DEVICE_ATTACH_PASID;
  CHECK(h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == EINVAL);  // argsz 12 < 16
  at.argsz = sizeof(at);
  at.pasid = 0x80000000;
  CHECK(h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == ENOSPC);
  at.pasid = 1;
  at.pt_id = 99;
  CHECK(h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == ENOENT);
  at.pt_id = ioas;
  CHECK(h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == EINVAL);
  CHECK(domains(h).empty());  // nothing was allocated for it
  at.argsz = 12;
  at.flags = 0;
  at.pt_id = 99;
  CHECK(h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == ENOENT);
  at.pt_id = devid;
  CHECK(h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == EINVAL);
  at.pt_id = ioas;
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == 0);  // a 12-byte struct
  CHECK(at.pt_id == ioas + 1);
  // pt_id cannot be written back: the device ends up detached, as Linux leaves it. The struct
  // straddles two pages; pt_id, at offset 8, is on the second, which is read-only.
  Buffer two(2 * K4);
  auto* s = reinterpret_cast<u32*>(two.addr() + K4 - 8);
  s[0] = 12;  // argsz
  s[1] = 0;   // flags
  s[2] = ioas;
  REQUIRE(mprotect(reinterpret_cast<void*>(two.addr() + K4), K4, PROT_READ) == 0);
  CHECK(h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, s) == EFAULT);
  CHECK(domains(h).empty());
  CHECK(destroy(h, fd, ioas) == 0);  // nothing holds the IOAS any more
}

TEST_CASE("cdev: TCE and nop devices cannot attach", "[cdev][attach]") {
  Harness h;
  const int fd = h.open("iommu");
  const u32 ioas = ioas_alloc(h, fd);
  const int tce = h.open("vfio/devices/vfio2");
  const int nop = h.open("vfio/devices/vfio3");
  REQUIRE(bind(h, tce, fd) == 0);
  REQUIRE(bind(h, nop, fd) == 0);
  CHECK(attach(h, tce, ioas) == EOPNOTSUPP);  // iommufd does not drive sPAPR TCE tables
  CHECK(attach(h, nop, ioas) == EINVAL);      // no IOMMU: nothing to attach
  CHECK(attach(h, nop, 99) == EINVAL);        // before the pt lookup
  // A VT-d HWPT refuses a TCE device.
  const int vtd = h.open("vfio/devices/vfio0");
  REQUIRE(bind(h, vtd, fd) == 0);
  u32 hwpt = 0;
  REQUIRE(attach(h, vtd, ioas, &hwpt) == 0);
  CHECK(attach(h, tce, hwpt) == EINVAL);
  CHECK(attach(h, tce, ioas) == EOPNOTSUPP);  // skips the VT-d HWPT, cannot make its own
  CHECK(domains(h).size() == 1);
}

TEST_CASE("cdev: DETACH_IOMMUFD_PT", "[cdev][attach]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  vfio_device_detach_iommufd_pt d{};
  d.argsz = 7;
  CHECK(h.fails(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d) == EINVAL);
  d.argsz = 8;
  d.flags = 4;
  CHECK(h.fails(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d) == EINVAL);
  // PASID: argsz must reach `pasid`; a PASID never attached detaches without error
  // (vfio_iommufd_physical_pasid_detach_ioas).
  d.flags = VFIO_DEVICE_DETACH_PASID;
  CHECK(h.fails(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d) == EINVAL);
  d.argsz = sizeof(d);
  d.pasid = 1;
  CHECK(h.ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d) == 0);
  d.argsz = 8;
  d.flags = 0;
  CHECK(h.ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d) == 0);  // nothing attached: still 0
  const u32 ioas = ioas_alloc(h, fd);
  REQUIRE(attach(h, dev, ioas) == 0);
  CHECK(domains(h).size() == 1);
  CHECK(h.ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d) == 0);
  CHECK(domains(h).empty());
}

// ---- vfio-pci information ----------------------------------------------------------------------

TEST_CASE("cdev: DEVICE_GET_INFO", "[cdev][info]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  struct {
    vfio_device_info info;
    u32 after;
  } s;
  std::memset(&s, 0xcc, sizeof(s));
  s.info.argsz = 15;
  CHECK(h.fails(dev, VFIO_DEVICE_GET_INFO, &s.info) == EINVAL);
  s.info.argsz = 20;  // the Linux 6.1 size: 20 bytes come back
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_GET_INFO, &s.info) == 0);
  CHECK(s.info.argsz == 20);
  CHECK(s.info.flags == (VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET));
  CHECK(s.info.num_regions == VFIO_PCI_NUM_REGIONS);
  CHECK(s.info.num_irqs == VFIO_PCI_NUM_IRQS);
  CHECK(s.info.cap_offset == 0);
  CHECK(s.info.pad == 0xcccccccc);
  s.info.argsz = 64;
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_GET_INFO, &s.info) == 0);
  CHECK(s.info.argsz == 64);  // no capabilities: argsz is left alone
  CHECK(s.info.pad == 0);
  CHECK(s.after == 0xcccccccc);
  CHECK(h.fails(dev, VFIO_DEVICE_GET_INFO, u64{0x10}) == EFAULT);
}

TEST_CASE("cdev: DEVICE_GET_REGION_INFO", "[cdev][info]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  auto region = [&](u32 index, vfio_region_info* r) {
    *r = {};
    r->argsz = sizeof(*r);
    r->index = index;
    r->cap_offset = 0x77;  // not touched without capabilities
    return h.fails(dev, VFIO_DEVICE_GET_REGION_INFO, r);
  };
  vfio_region_info r{};
  REQUIRE(region(VFIO_PCI_BAR0_REGION_INDEX, &r) == 0);
  CHECK(r.size == 16 * 1024);
  CHECK(r.offset == 0);
  CHECK(r.flags == (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE));  // no MMAP
  CHECK(r.cap_offset == 0x77);
  for (u32 bar = 1; bar <= 5; ++bar) {
    REQUIRE(region(bar, &r) == 0);
    CHECK(r.size == 0);
    CHECK(r.flags == 0);
    CHECK(r.offset == u64{bar} << 40);
  }
  REQUIRE(region(VFIO_PCI_ROM_REGION_INDEX, &r) == 0);
  CHECK(r.size == 0);
  CHECK(r.offset == u64{6} << 40);
  REQUIRE(region(VFIO_PCI_CONFIG_REGION_INDEX, &r) == 0);
  CHECK(r.size == 256);
  CHECK(r.offset == kConfig);
  CHECK(r.flags == (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE));
  CHECK(region(VFIO_PCI_VGA_REGION_INDEX, &r) == EINVAL);  // not a VGA device
  CHECK(region(9, &r) == EINVAL);
  CHECK(region(0xffffffff, &r) == EINVAL);
  r = {};
  r.argsz = 31;
  CHECK(h.fails(dev, VFIO_DEVICE_GET_REGION_INFO, &r) == EINVAL);
}

TEST_CASE("cdev: GET_REGION_INFO once the transport maps BARs", "[cdev][info][mmap]") {
  Harness h;
  REQUIRE(core::enable_bar_mmap(h.emu).ok());
  int fd = -1;
  // The passive device: BAR0 mappable, no capability (cap_offset untouched).
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  vfio_region_info r{};
  r.argsz = sizeof(r);
  r.index = VFIO_PCI_BAR0_REGION_INDEX;
  r.cap_offset = 0x77;
  REQUIRE(h.fails(dev, VFIO_DEVICE_GET_REGION_INFO, &r) == 0);
  CHECK(r.flags == (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
                    VFIO_REGION_INFO_FLAG_MMAP));
  CHECK(r.cap_offset == 0x77);
  CHECK(core::device_bar_fd(h.emu, *h.emu.node("vfio/devices/vfio0")) >= 0);
  CHECK(core::device_bar_fd(h.emu, *h.emu.node("iommu")) == -1);
  r = {};
  r.argsz = sizeof(r);
  r.index = VFIO_PCI_CONFIG_REGION_INDEX;  // config space is never mapped
  REQUIRE(h.fails(dev, VFIO_DEVICE_GET_REGION_INFO, &r) == 0);
  CHECK(!(r.flags & VFIO_REGION_INFO_FLAG_MMAP));

  // The I/OAT function: BAR0 holds the MSI-X table, so it carries MSIX_MAPPABLE
  // (msix_mmappable_cap) after the struct, when argsz leaves room for it.
  int fd4 = -1;
  const int ioat = bound_device(h, "vfio/devices/vfio4", &fd4);
  struct {
    vfio_region_info info;
    vfio_info_cap_header cap;
  } full{};
  full.info.argsz = sizeof(full);
  full.info.index = VFIO_PCI_BAR0_REGION_INDEX;
  REQUIRE(h.fails(ioat, VFIO_DEVICE_GET_REGION_INFO, &full) == 0);
  CHECK(full.info.flags == (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
                            VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS));
  CHECK(full.info.size == 0x4000);
  CHECK(full.info.cap_offset == sizeof(vfio_region_info));
  CHECK(full.cap.id == VFIO_REGION_INFO_CAP_MSIX_MAPPABLE);
  CHECK(full.cap.version == 1);
  CHECK(full.cap.next == 0);
  // Too small for the chain: argsz says what is needed, cap_offset 0, nothing written past it.
  full = {};
  full.info.argsz = sizeof(vfio_region_info);
  full.info.index = VFIO_PCI_BAR0_REGION_INDEX;
  full.cap.id = 0xeeee;
  REQUIRE(h.fails(ioat, VFIO_DEVICE_GET_REGION_INFO, &full.info) == 0);
  CHECK(full.info.argsz == sizeof(full));
  CHECK(full.info.cap_offset == 0);
  CHECK((full.info.flags & VFIO_REGION_INFO_FLAG_CAPS) != 0);
  CHECK(full.cap.id == 0xeeee);
}

TEST_CASE("cdev: a mapped BAR is device memory: IOAS_MAP cannot pin it", "[cdev][mmap]") {
  // Linux: a BAR's mapping is VM_PFNMAP; iommufd pins struct pages and fails with EFAULT
  // (vfio_dma_mapping_mmio_test expects exactly that for every iommufd mode).
  Harness h;
  REQUIRE(core::enable_bar_mmap(h.emu).ok());
  int iommufd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio4", &iommufd);
  const u32 ioas = ioas_alloc(h, iommufd);
  REQUIRE(attach(h, dev, ioas) == 0);
  const int bar_fd = core::device_bar_fd(h.emu, *h.emu.node("vfio/devices/vfio4"));
  REQUIRE(bar_fd >= 0);
  // The harness's caller is this process: map the BAR as a program's mmap would.
  void* bar = ::mmap(nullptr, 0x4000, PROT_READ | PROT_WRITE, MAP_SHARED, bar_fd, 0);
  REQUIRE(bar != MAP_FAILED);
  CHECK(ioas_map_at(h, iommufd, ioas, reinterpret_cast<u64>(bar), 0x4000, 0x100000) == EFAULT);
  CHECK(ioas_map_at(h, iommufd, ioas, reinterpret_cast<u64>(bar) + 0x1000, 0x1000, 0x100000) ==
        EFAULT);
  // Ordinary memory next to it still maps.
  void* mem = ::mmap(nullptr, 0x4000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(mem != MAP_FAILED);
  CHECK(ioas_map_at(h, iommufd, ioas, reinterpret_cast<u64>(mem), 0x4000, 0x100000) == 0);
  ::munmap(bar, 0x4000);
  ::munmap(mem, 0x4000);
}

TEST_CASE("cdev: DEVICE_GET_IRQ_INFO", "[cdev][info]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  auto irq = [&](u32 index, vfio_irq_info* q) {
    *q = {sizeof(*q), 0, index, 0};
    return h.fails(dev, VFIO_DEVICE_GET_IRQ_INFO, q);
  };
  vfio_irq_info q{};
  REQUIRE(irq(VFIO_PCI_INTX_IRQ_INDEX, &q) == 0);
  CHECK(q.count == 1);
  CHECK(q.flags == (VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED));
  for (u32 i : {VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX}) {
    REQUIRE(irq(i, &q) == 0);
    CHECK(q.count == 0);
    CHECK(q.flags == (VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE));
  }
  REQUIRE(irq(VFIO_PCI_REQ_IRQ_INDEX, &q) == 0);
  CHECK(q.count == 1);
  CHECK(q.flags == (VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE));
  REQUIRE(irq(VFIO_PCI_ERR_IRQ_INDEX, &q) == 0);  // every device (Linux 7.x; 6.12: PCIe only)
  CHECK(q.count == 1);
  CHECK(q.flags == (VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE));
  CHECK(irq(VFIO_PCI_NUM_IRQS, &q) == EINVAL);
  q = {15, 0, 0, 0};
  CHECK(h.fails(dev, VFIO_DEVICE_GET_IRQ_INFO, &q) == EINVAL);
}

// ---- regions -----------------------------------------------------------------------------------

TEST_CASE("cdev: config space reads, write masks and BAR sizing", "[cdev][regions]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  u8 cfg[256];
  REQUIRE(h.pread(dev, cfg, sizeof(cfg), kConfig) == 256);
  u16 vendor, device;
  std::memcpy(&vendor, cfg, 2);
  std::memcpy(&device, cfg + 2, 2);
  CHECK(vendor == 0x1b36);
  CHECK(device == 0x0005);
  CHECK(cfg[0x3d] == 1);  // INTA#
  CHECK(cfg[4] == 0x02);     // the open enabled memory decoding (pci_enable_device)
  // Vendor id is read-only.
  const u16 junk = 0xdead;
  REQUIRE(h.pwrite(dev, &junk, 2, kConfig) == 2);
  REQUIRE(h.pread(dev, &vendor, 2, kConfig) == 2);
  CHECK(vendor == 0x1b36);
  // BAR sizing: all ones reads back the size mask.
  const u32 ones = 0xffffffff;
  REQUIRE(h.pwrite(dev, &ones, 4, kConfig + 0x10) == 4);
  u32 bar = 0;
  REQUIRE(h.pread(dev, &bar, 4, kConfig + 0x10) == 4);
  CHECK(bar == ~u32{16 * 1024 - 1});
  REQUIRE(h.pwrite(dev, &ones, 4, kConfig + 0x14) == 4);  // BAR1 is not implemented
  REQUIRE(h.pread(dev, &bar, 4, kConfig + 0x14) == 4);
  CHECK(bar == 0);
  const u32 addr = 0xfe000000;
  REQUIRE(h.pwrite(dev, &addr, 4, kConfig + 0x10) == 4);
  REQUIRE(h.pread(dev, &bar, 4, kConfig + 0x10) == 4);
  CHECK(bar == addr);
  // Command: memory space and bus master are writable, the rest is not.
  const u16 cmd = 0xffff;
  REQUIRE(h.pwrite(dev, &cmd, 2, kConfig + 4) == 2);
  u16 got = 0;
  REQUIRE(h.pread(dev, &got, 2, kConfig + 4) == 2);
  CHECK(got == 0x0406);
  // Accesses that do not fit in the 256 bytes: EFAULT; unknown regions: EINVAL.
  CHECK(h.pread(dev, cfg, 4, kConfig + 254) == -1);
  CHECK(errno == EFAULT);
  CHECK(h.pread(dev, cfg, 1, kConfig + 256) == -1);
  CHECK(errno == EFAULT);
  CHECK(h.pread(dev, cfg, 1, u64{9} << 40) == -1);
  CHECK(errno == EINVAL);
  CHECK(h.pread(dev, cfg, 0, kConfig + 4096) == 0);  // nothing to do
  // RESET keeps config space, as Linux restores it after the function reset.
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_RESET) == 0);
  REQUIRE(h.pread(dev, &bar, 4, kConfig + 0x10) == 4);
  CHECK(bar == addr);
  REQUIRE(h.pread(dev, &got, 2, kConfig + 4) == 2);
  CHECK(got == 0x0406);
  // The last close restores what the first open saw: the power-on values, memory decoding on.
  h.close(dev);
  const int again = bound_device(h, "vfio/devices/vfio0", &fd);
  REQUIRE(h.pread(again, &bar, 4, kConfig + 0x10) == 4);
  CHECK(bar == 0);
  REQUIRE(h.pread(again, &got, 2, kConfig + 4) == 2);
  CHECK(got == 0x0002);
}

TEST_CASE("cdev: BAR accesses with memory decoding off are EIO", "[cdev][regions]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  u32 v = 0x12345678;
  REQUIRE(h.pwrite(dev, &v, 4, kBar0) == 4);
  const u16 off = 0;
  REQUIRE(h.pwrite(dev, &off, 2, kConfig + 4) == 2);  // PCI_COMMAND: memory decoding off
  CHECK(h.pread(dev, &v, 4, kBar0) == -1);
  CHECK(errno == EIO);
  CHECK(h.pwrite(dev, &v, 4, kBar0) == -1);
  CHECK(errno == EIO);
  // Range checks come first.
  CHECK(h.pread(dev, &v, 4, kBar0 + 16 * 1024) == -1);
  CHECK(errno == EINVAL);
  const u16 on = 0x0002;
  REQUIRE(h.pwrite(dev, &on, 2, kConfig + 4) == 2);
  REQUIRE(h.pread(dev, &v, 4, kBar0) == 4);
  CHECK(v == 0x12345678);
}

TEST_CASE("cdev: BAR0 is plain memory; other BARs, ROM and VGA are EINVAL", "[cdev][regions]") {
  Harness h;
  int fd = -1;
  const int dev = bound_device(h, "vfio/devices/vfio0", &fd);
  std::vector<u8> pattern(64);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<u8>(i * 7);
  REQUIRE(h.pwrite(dev, pattern.data(), 64, kBar0 + 0x100) == 64);
  std::vector<u8> back(64);
  REQUIRE(h.pread(dev, back.data(), 64, kBar0 + 0x100) == 64);
  CHECK(back == pattern);
  // Accesses are cut at the end of the BAR; at or past it, EINVAL.
  CHECK(h.pread(dev, back.data(), 64, kBar0 + 16 * 1024 - 16) == 16);
  CHECK(h.pwrite(dev, back.data(), 64, kBar0 + 16 * 1024) == -1);
  CHECK(errno == EINVAL);
  for (u64 index : {1, 5, 6, 8}) {
    INFO("region " << index);
    CHECK(h.pread(dev, back.data(), 4, index << 40) == -1);
    CHECK(errno == EINVAL);
    CHECK(h.pwrite(dev, back.data(), 4, index << 40) == -1);
    CHECK(errno == EINVAL);
  }
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_RESET) == 0);
  REQUIRE(h.pread(dev, back.data(), 64, kBar0 + 0x100) == 64);
  CHECK(back == std::vector<u8>(64, 0));
}

// ---- closing -----------------------------------------------------------------------------------

TEST_CASE("cdev: closing the device fd detaches, unbinds and releases the context",
          "[cdev][lifetime]") {
  Harness h;
  const int fd = h.open("iommu");
  const int dev = h.open("vfio/devices/vfio0");
  u32 devid = 0;
  REQUIRE(bind(h, dev, fd, &devid) == 0);
  const u32 ioas = ioas_alloc(h, fd);
  REQUIRE(attach(h, dev, ioas) == 0);
  Buffer buf(4 * K4);
  REQUIRE(ioas_map_at(h, fd, ioas, buf.addr(), 4 * K4, 0x100000) == 0);
  CHECK(user_locked(h) == 4 * K4);
  const int dup = h.dup(dev);
  REQUIRE(h.close(dev) == 0);  // another fd still refers to the open file
  CHECK(domains(h).size() == 1);
  REQUIRE(h.close(dup) == 0);
  CHECK(domains(h).empty());
  CHECK(user_locked(h) == 0);
  CHECK(destroy(h, fd, devid) == ENOENT);  // the device object is gone
  CHECK(destroy(h, fd, ioas) == 0);
}

TEST_CASE("cdev: a store `vfio-emu run` trapped reaches the model before the next load",
          "[cdev][mmap][trap]") {
  // tools/store_watch.h: under run the program's BAR0 mapping is read-only and each store comes
  // to the daemon as device_bar_store. What the model shows in the window (the program's loads)
  // must reflect it when the call returns.
  Harness h;
  REQUIRE(core::enable_bar_mmap(h.emu).ok());
  int iommufd = -1;
  bound_device(h, "vfio/devices/vfio4", &iommufd);
  core::Device* ioat = nullptr;
  core::Device* testdev = nullptr;
  for (const auto& g : h.emu.groups())
    for (const auto& d : g->devices()) {
      if (d->spec().bdf == "0000:00:05.0") ioat = d.get();
      if (d->spec().bdf == "0000:00:01.0") testdev = d.get();
    }
  REQUIRE(ioat != nullptr);
  REQUIRE(testdev != nullptr);
  const int bar_fd = core::device_bar_fd(h.emu, *h.emu.node("vfio/devices/vfio4"));
  REQUIRE(bar_fd >= 0);
  auto* bar = static_cast<volatile u8*>(
      ::mmap(nullptr, 0x4000, PROT_READ | PROT_WRITE, MAP_SHARED, bar_fd, 0));
  REQUIRE(bar != MAP_FAILED);
  auto load = [&](u64 off, u32 width) {
    u64 v = 0;
    for (u32 i = 0; i < width; ++i) v |= u64{bar[off + i]} << (8 * i);
    return v;
  };
  constexpr u64 kChanCmd = 0x84, kDmaCount = 0x86, kChanSts = 0x88, kChainAddr = 0x90,
                kChanErr = 0xa8;
  auto state = [&] { return load(kChanSts, 8) & 7; };
  auto store = [&](u64 off, u64 v, u32 width) { return core::device_bar_store(*ioat, 0, off, v, width); };

  SECTION("what is refused") {
    CHECK(core::device_bar_store(*testdev, 0, 0, 1, 4).error() == EINVAL);  // not trapped
    CHECK(store(0x80, 1, 3).error() == EINVAL);     // no such width
    CHECK(store(0x4000, 1, 4).error() == EINVAL);   // past the BAR
    CHECK(store(0x3ffc, 1, 8).error() == EINVAL);   // not wholly inside it
    CHECK(core::device_bar_store(*ioat, 1, 0, 1, 4).error() == EINVAL);  // BAR1 is empty
  }
  SECTION("a doorbell right after a reset, and CHANERR written back") {
    REQUIRE(store(kChanCmd, 0x20, 1).ok());  // CHANCMD reset
    for (int i = 0; i < 5000 && (load(kChanCmd, 1) & 0x20); ++i) ::usleep(1000);
    REQUIRE((load(kChanCmd, 1) & 0x20) == 0);
    CHECK(state() == 3);  // HALTED after the reset
    // The doorbell: the next load must not show the reset's error-free HALTED any more.
    REQUIRE(store(kChainAddr, 0x100000, 8).ok());
    REQUIRE(store(kDmaCount, 1, 2).ok());
    CHECK((state() != 3 || load(kChanErr, 4) != 0));
    // Nothing is mapped at 0x100000: the channel halts with CHANERR's next-address bit.
    for (int i = 0; i < 5000 && !(state() == 3 && load(kChanErr, 4) != 0); ++i) ::usleep(1000);
    const u64 err = load(kChanErr, 4);
    REQUIRE(err != 0);
    // Written back: the value the window shows, which a scan of the window cannot see as a store.
    REQUIRE(store(kChanErr, err, 4).ok());
    CHECK(load(kChanErr, 4) == 0);
  }
  SECTION("with memory decoding off: EIO (Linux's fault handler gives SIGBUS)") {
    core::DeviceFile* df = nullptr;
    for (const auto& f : h.emu.files())
      if (auto* d = dynamic_cast<core::DeviceFile*>(f.get()); d && d->device == ioat) df = d;
    REQUIRE(df != nullptr);
    u16 cmd = 0;
    REQUIRE(core::device_read(h.emu, *df, core::vfio_pci_index_to_offset(VFIO_PCI_CONFIG_REGION_INDEX) + 4, &cmd, 2).ok());
    cmd = static_cast<u16>(cmd & ~2u);
    REQUIRE(core::device_write(h.emu, *df, core::vfio_pci_index_to_offset(VFIO_PCI_CONFIG_REGION_INDEX) + 4, &cmd, 2).ok());
    CHECK(store(kChanCmd, 0x20, 1).error() == EIO);
  }
  ::munmap(const_cast<u8*>(bar), 0x4000);
}
