// The sysfs and debugfs files `vfio-emu run` shows (cuse/sysfs_files.h): their formats, the
// errnos of kernfs's open and of the stores of Linux 7.3, and debugfs's page table from the
// device's current domain.
#include <fcntl.h>

#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "base/vtd_debugfs_format.h"
#include "core/uapi/vfio.h"
#include "cuse/sysfs_files.h"
#include "tests/unit/core_harness.h"

namespace vfio_emu::test {
namespace {

using namespace vfio_emu::uapi;
using cuse::SysfsFile;
using cuse::SysfsFiles;

const SysfsFile& file(const SysfsFiles& s, const std::string& path) {
  for (const SysfsFile& f : s.files())
    if (f.path == path) return f;
  FAIL("no file " << path);
  throw 0;
}

int open_errno(SysfsFiles& s, const std::string& path, int flags, bool privileged = true) {
  auto r = s.open(file(s, path), flags, privileged);
  return r ? 0 : r.error();
}

std::string contents(SysfsFiles& s, const std::string& path, bool privileged = true) {
  auto r = s.open(file(s, path), O_RDONLY, privileged);
  REQUIRE(r);
  return r.take();
}

long store(SysfsFiles& s, const std::string& path, std::string_view data) {
  auto r = s.store(file(s, path), data);
  return r ? static_cast<long>(*r) : -r.error();
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

const std::string kDev = "sys/bus/pci/devices/0000:00:05.0/";
const std::string kDrv = "sys/bus/pci/drivers/vfio-pci/";

TEST_CASE("resource: 13 lines of start, end and flags as resource_show", "[sysfs]") {
  std::vector<u8> config(256);
  auto put32 = [&](size_t at, u32 v) {
    for (int i = 0; i < 4; ++i) config[at + i] = static_cast<u8>(v >> (8 * i));
  };
  put32(0x10, 0xfe000004);  // BAR0: 64-bit memory, non-prefetchable, at 0x1_fe000000
  put32(0x14, 0x1);
  put32(0x18, 0xc000000c);  // BAR2: 64-bit prefetchable
  put32(0x1c, 0x0);
  put32(0x20, 0xe000);      // BAR4: 32-bit memory
  put32(0x24, 0xc001);      // BAR5: I/O
  const auto text = cuse::pci_resource_text(config, {0x4000, 0, 0x100000, 0, 0x1000, 0x20});
  const auto l = lines(text);
  REQUIRE(l.size() == 13);
  CHECK(l[0] == "0x00000001fe000000 0x00000001fe003fff 0x0000000000140204");
  CHECK(l[1] == "0x0000000000000000 0x0000000000000000 0x0000000000000000");
  CHECK(l[2] == "0x00000000c0000000 0x00000000c00fffff 0x000000000014220c");
  CHECK(l[4] == "0x000000000000e000 0x000000000000efff 0x0000000000040200");
  CHECK(l[5] == "0x000000000000c000 0x000000000000c01f 0x0000000000040101");
  for (size_t i = 6; i < 13; ++i)
    CHECK(l[i] == "0x0000000000000000 0x0000000000000000 0x0000000000000000");
}

TEST_CASE("sysfs_streq: one trailing newline on either side", "[sysfs]") {
  CHECK(cuse::sysfs_streq("0000:00:05.0", "0000:00:05.0\n"));
  CHECK(cuse::sysfs_streq("0000:00:05.0\n", "0000:00:05.0"));
  CHECK(cuse::sysfs_streq("abc", "abc"));
  CHECK_FALSE(cuse::sysfs_streq("0000:00:05.0", "0000:00:05.0\n\n"));
  CHECK_FALSE(cuse::sysfs_streq("0000:00:05.0", "0000:00:05."));
  CHECK_FALSE(cuse::sysfs_streq("0000:00:05.0", "0000:00:05.0 "));
  CHECK_FALSE(cuse::sysfs_streq("", "x"));
}

TEST_CASE("debugfs rows: Linux 7.3's dump_page_info leaves out an empty PDE and PTE", "[debugfs]") {
  CHECK(vtd_debugfs_header() ==
        "IOVA_PFN         \tPML5E             \tPML4E             \tPDPE              \t"
        "PDE               \tPTE\n");
  const u64 page[6] = {0, 0x1003, 0x2003, 0x3003, 0x4003, 0};
  CHECK(vtd_debugfs_row(0x12345000, page) ==
        "0x0000000012345 |\t0x0000000000000000\t0x0000000000004003\t0x0000000000003003\t"
        "0x0000000000002003\t0x0000000000001003\n");
  const u64 huge2m[6] = {0, 0, 0x2083, 0x3003, 0x4003, 0};
  CHECK(vtd_debugfs_row(0x200000, huge2m) ==
        "0x0000000000200 |\t0x0000000000000000\t0x0000000000004003\t0x0000000000003003\t"
        "0x0000000000002083\n");
  const u64 huge1g[6] = {0, 0, 0, 0x3083, 0x4003, 0};
  CHECK(vtd_debugfs_row(0x40000000, huge1g) ==
        "0x0000000040000 |\t0x0000000000000000\t0x0000000000004003\t0x0000000000003083\n");
  CHECK(vtd_debugfs_device_line(0, 0, 5, 0, 0x1000) == "Device 0000:00:05.0 @0x1000\n");
}

TEST_CASE("sysfs: kernfs's EACCES for a write without store or a read without show, even for root",
          "[sysfs]") {
  Harness h;
  SysfsFiles s(h.emu);
  for (const char* ro : {"vendor", "device", "class", "revision", "subsystem_vendor",
                         "subsystem_device", "irq", "resource"}) {
    INFO(ro);
    CHECK(open_errno(s, kDev + ro, O_WRONLY) == EACCES);
    CHECK(open_errno(s, kDev + ro, O_RDWR) == EACCES);
    CHECK(open_errno(s, kDev + ro, O_RDONLY) == 0);
    CHECK(file(s, kDev + ro).mode == 0444);
  }
  for (const char* wo : {"bind", "unbind", "new_id", "remove_id"}) {
    INFO(wo);
    CHECK(open_errno(s, kDrv + wo, O_RDONLY) == EACCES);
    CHECK(open_errno(s, kDrv + wo, O_WRONLY) == 0);
    CHECK(file(s, kDrv + wo).mode == 0200);
  }
  CHECK(open_errno(s, kDev + "driver_override", O_RDWR) == 0);
  CHECK(open_errno(s, kDev + "config", O_RDWR) == 0);
}

TEST_CASE("sysfs: ids from config space; config whole for CAP_SYS_ADMIN, else 64 bytes", "[sysfs]") {
  Harness h;
  SysfsFiles s(h.emu);
  CHECK(contents(s, kDev + "vendor") == "0x8086\n");
  CHECK(contents(s, kDev + "device") == "0x2021\n");
  CHECK(contents(s, kDev + "class") == "0x088000\n");
  const std::string all = contents(s, kDev + "config");
  CHECK(all.size() == 4096);
  CHECK(file(s, kDev + "config").size == 4096);
  const std::string some = contents(s, kDev + "config", false);
  CHECK(some == all.substr(0, 64));
  // The capability list the ioat model has: the pointer at 0x34 leads somewhere in config.
  CHECK(static_cast<u8>(all[0x34]) >= 0x40);
  // The device's own BAR0, 16 KiB, 64-bit non-prefetchable.
  CHECK(lines(contents(s, kDev + "resource"))[0] ==
        "0x0000000000000000 0x0000000000003fff 0x0000000000140204");
}

TEST_CASE("sysfs: driver_override, bind, unbind, new_id, remove_id answer as Linux 7.3", "[sysfs]") {
  Harness h;
  SysfsFiles s(h.emu);
  const std::string ov = kDev + "driver_override";
  CHECK(contents(s, ov) == "(null)\n");
  CHECK(store(s, ov, "other\n") == 6);
  CHECK(contents(s, ov) == "other\n");
  // bind: the override names another driver, so vfio-pci does not match: ENODEV.
  CHECK(store(s, kDrv + "bind", "0000:00:05.0\n") == -ENODEV);
  CHECK(store(s, ov, "vfio-pci") == 8);
  // It matches, and the device has its driver already: EBUSY.
  CHECK(store(s, kDrv + "bind", "0000:00:05.0\n") == -EBUSY);
  CHECK(store(s, ov, "\n") == 1);  // cleared
  CHECK(contents(s, ov) == "(null)\n");
  CHECK(store(s, kDrv + "bind", "0000:00:05.0") == -ENODEV);  // no id of vfio-pci matches
  CHECK(store(s, ov, std::string(4095, 'x')) == -EINVAL);     // >= PAGE_SIZE - 1
  CHECK(store(s, kDrv + "bind", "garbage") == -ENODEV);
  CHECK(store(s, kDrv + "bind", "") == -ENODEV);
  CHECK(store(s, kDrv + "unbind", "0000:00:99.0") == -ENODEV);
  CHECK(store(s, kDrv + "unbind", "0000:00:05.0\n") == -EBUSY);  // refused, never a success

  CHECK(store(s, kDrv + "new_id", "8086") == -EINVAL);  // fewer than 2 fields
  CHECK(store(s, kDrv + "new_id", "zz zz") == -EINVAL);
  CHECK(store(s, kDrv + "new_id", "8086 2021 ffffffff ffffffff 0 0 1") == -EINVAL);  // data
  CHECK(store(s, kDrv + "new_id", "8086 2021\n") == 10);
  CHECK(store(s, kDrv + "new_id", "8086 2021") == -EEXIST);
  CHECK(store(s, kDrv + "bind", "0000:00:05.0") == -EBUSY);  // the new id matches it
  CHECK(store(s, kDrv + "remove_id", "8086") == -EINVAL);
  CHECK(store(s, kDrv + "remove_id", "8086 2022") == -ENODEV);
  CHECK(store(s, kDrv + "remove_id", "8086 2021\n") == 10);
  CHECK(store(s, kDrv + "remove_id", "8086 2021") == -ENODEV);
  // Config space through sysfs: refused.
  CHECK(store(s, kDev + "config", "\x01") == -EPERM);
}

TEST_CASE("debugfs: domain_translation_struct is the device's current domain at each open",
          "[debugfs]") {
  Harness h;
  SysfsFiles s(h.emu);
  const std::string path = "sys/kernel/debug/iommu/intel/0000:00:01.0/domain_translation_struct";
  // Only devices behind VT-d have one (group 4 is behind the no-op unit).
  for (const SysfsFile& f : s.files())
    CHECK(f.path.find("intel/0000:00:04.0") == std::string::npos);
  CHECK(contents(s, path).empty());  // no domain: no context entry
  const int g = h.open("vfio/1");
  const int c = h.open("vfio/vfio");
  REQUIRE(h.ioctl(g, VFIO_GROUP_SET_CONTAINER, &c) == 0);
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  const std::string empty = contents(s, path);
  REQUIRE(lines(empty).size() == 2);
  CHECK(lines(empty)[0].rfind("Device 0000:00:01.0 @0x", 0) == 0);
  CHECK(lines(empty)[1] + "\n" == vtd_debugfs_header());
  Buffer buf(2 * 4096);
  for (u64 i = 0; i < 2; ++i) {
    vfio_iommu_type1_dma_map m{sizeof(m), VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                               buf.addr() + i * 4096, 0x100000 + i * 4096, 4096};
    REQUIRE(h.ioctl(c, VFIO_IOMMU_MAP_DMA, &m) == 0);
  }
  const auto mapped = lines(contents(s, path));
  REQUIRE(mapped.size() == 4);
  CHECK(mapped[2].rfind("0x0000000000100 |\t0x0000000000000000\t0x", 0) == 0);
  CHECK(mapped[3].rfind("0x0000000000101 |\t", 0) == 0);
  // Six columns: PML5E (none, 4 levels), PML4E, PDPE, PDE, PTE.
  CHECK(std::count(mapped[2].begin(), mapped[2].end(), '\t') == 5);
  vfio_iommu_type1_dma_unmap u{};
  u.argsz = sizeof(u);
  u.iova = 0x100000;
  u.size = 4096;
  REQUIRE(h.ioctl(c, VFIO_IOMMU_UNMAP_DMA, &u) == 0);
  const auto after = lines(contents(s, path));
  REQUIRE(after.size() == 3);
  CHECK(after[2].rfind("0x0000000000101 |", 0) == 0);
  // Debugfs has no write: root may open it for writing, and the write fails.
  CHECK(open_errno(s, path, O_WRONLY) == 0);
  CHECK(store(s, path, "x") == -EINVAL);
}

}  // namespace
}  // namespace vfio_emu::test
