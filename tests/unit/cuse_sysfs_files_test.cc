// The sysfs and debugfs files `vfio-emu run` shows (cuse/sysfs_files.h): their formats, the
// errnos of kernfs's open and of the stores of Linux 7.3, and debugfs's page table from the
// device's current domain.
#include <fcntl.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base/vtd_debugfs_format.h"
#include "core/uapi/vfio.h"
#include "devices/device_model.h"
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


// ---- resourceN[_wc] ----------------------------------------------------------------------------

const std::string kTestdev = "sys/bus/pci/devices/0000:00:01.0/";

bool has_file(const SysfsFiles& s, const std::string& path) {
  for (const SysfsFile& f : s.files())
    if (f.path == path) return true;
  return false;
}

long bin_read(SysfsFiles& s, const std::string& path, u64 pos, size_t count, u8* out = nullptr) {
  u8 scratch[4096];
  auto r = s.bin_read(file(s, path), pos, out != nullptr ? out : scratch,
                      std::min(count, sizeof(scratch)));
  return r ? static_cast<long>(*r) : -r.error();
}

long bin_write(SysfsFiles& s, const std::string& path, u64 pos, const u8* in, size_t count) {
  auto r = s.bin_write(file(s, path), pos, in, count);
  return r ? static_cast<long>(*r) : -r.error();
}

TEST_CASE("resourceN of a memory BAR: 0600, the BAR's size, mmap only (read and write EIO)",
          "[sysfs]") {
  Harness h;
  SysfsFiles s(h.emu);
  const SysfsFile& r0 = file(s, kTestdev + "resource0");
  CHECK(r0.kind == cuse::SysfsKind::kResourceBar);
  CHECK(r0.mode == 0600);
  CHECK(r0.size == 16384);
  CHECK(r0.bar == 0);
  CHECK_FALSE(r0.io_bar);
  CHECK(cuse::resource_has_mmap(r0));
  CHECK_FALSE(has_file(s, kTestdev + "resource0_wc"));  // not prefetchable
  CHECK_FALSE(has_file(s, kTestdev + "resource1"));     // no BAR1
  // The I/OAT engine: BAR0 (64-bit, 16 KiB), its upper half no file.
  CHECK(file(s, kDev + "resource0").size == 16384);
  CHECK_FALSE(has_file(s, kDev + "resource1"));
  // kernfs: a binary attribute with mmap opens for reading and writing.
  CHECK(open_errno(s, kTestdev + "resource0", O_RDWR) == 0);
  CHECK(open_errno(s, kTestdev + "resource0", O_RDONLY) == 0);
  CHECK(open_errno(s, kTestdev + "resource0", O_WRONLY) == 0);
  // sysfs_kf_bin_read: 0 bytes or at/past the end: 0; else no read method: EIO.
  CHECK(bin_read(s, kTestdev + "resource0", 0, 4) == -EIO);
  CHECK(bin_read(s, kTestdev + "resource0", 16383, 4) == -EIO);
  CHECK(bin_read(s, kTestdev + "resource0", 16384, 4) == 0);
  CHECK(bin_read(s, kTestdev + "resource0", u64{1} << 62, 4) == 0);
  CHECK(bin_read(s, kTestdev + "resource0", 0, 0) == 0);
  // sysfs_kf_bin_write: at/past the end EFBIG (even for 0 bytes); 0 bytes: 0; else EIO.
  const u8 data[4] = {1, 2, 3, 4};
  CHECK(bin_write(s, kTestdev + "resource0", 0, data, 4) == -EIO);
  CHECK(bin_write(s, kTestdev + "resource0", 16384, data, 4) == -EFBIG);
  CHECK(bin_write(s, kTestdev + "resource0", 16384, data, 0) == -EFBIG);
  CHECK(bin_write(s, kTestdev + "resource0", 100, data, 0) == 0);
}

// A function with a 64-bit prefetchable memory BAR0 and a 32-byte I/O BAR2 whose ports hold what
// is written to them.
class IoBarModel final : public devices::DeviceModel {
 public:
  std::string_view name() const override { return "io-bar-fake"; }
  u32 config_size() const override { return 256; }
  void power_on_config(std::span<u8> config, std::span<u8> mask) const override {
    std::fill(config.begin(), config.end(), 0);
    std::fill(mask.begin(), mask.end(), 0);
  }
  u64 bar_size(u32 bar) const override { return bar == 0 ? 0x4000 : bar == 2 ? 0x20 : 0; }
  void bar_read(u32 bar, u64 offset, u8* out, u64 len) override {
    accesses.push_back({bar, offset, len, false});
    std::memcpy(out, ports + offset, len);
  }
  void bar_write(u32 bar, u64 offset, const u8* in, u64 len) override {
    accesses.push_back({bar, offset, len, true});
    std::memcpy(ports + offset, in, len);
  }
  void reset() override {}
  struct Access {
    u32 bar;
    u64 offset, len;
    bool write;
  };
  std::vector<Access> accesses;
  u8 ports[0x4000] = {};
};

TEST_CASE("resourceN of an I/O BAR: 1, 2 or 4 bytes reach the model (pci_resource_io); "
          "resourceN_wc of a prefetchable memory BAR", "[sysfs]") {
  Harness h;
  core::Device* dev = nullptr;
  for (const auto& g : h.emu.groups())
    for (const auto& d : g->devices())
      if (d->spec().bdf == "0000:00:01.0") dev = d.get();
  REQUIRE(dev != nullptr);
  auto fake = std::make_unique<IoBarModel>();
  IoBarModel* io = fake.get();
  std::unique_ptr<devices::DeviceModel> testdev = std::move(dev->model);
  dev->model = std::move(fake);
  {
    std::lock_guard lock(dev->regions_mu);
    const u32 bar0 = 0xc, bar2 = 0x1;  // 64-bit prefetchable memory; I/O
    std::memcpy(&dev->config[0x10], &bar0, 4);
    std::memcpy(&dev->config[0x18], &bar2, 4);
  }
  SysfsFiles s(h.emu);
  const SysfsFile& wc = file(s, kTestdev + "resource0_wc");
  CHECK(wc.kind == cuse::SysfsKind::kResourceBarWc);
  CHECK(wc.mode == 0600);
  CHECK(wc.size == 0x4000);
  CHECK(cuse::resource_has_mmap(wc));
  CHECK(bin_read(s, kTestdev + "resource0_wc", 0, 4) == -EIO);
  const SysfsFile& r2 = file(s, kTestdev + "resource2");
  CHECK(r2.io_bar);
  CHECK(r2.size == 0x20);
  CHECK_FALSE(cuse::resource_has_mmap(r2));  // x86 cannot mmap I/O space
  CHECK_FALSE(has_file(s, kTestdev + "resource2_wc"));
  CHECK_FALSE(has_file(s, kTestdev + "resource1"));

  const u8 word[4] = {0x78, 0x56, 0x34, 0x12};
  CHECK(bin_write(s, kTestdev + "resource2", 4, word, 4) == 4);
  CHECK(bin_write(s, kTestdev + "resource2", 9, word, 2) == 2);  // unaligned, as outw
  CHECK(bin_write(s, kTestdev + "resource2", 0x1f, word, 1) == 1);
  u8 got[8] = {};
  CHECK(bin_read(s, kTestdev + "resource2", 4, 4, got) == 4);
  CHECK(std::memcmp(got, word, 4) == 0);
  CHECK(bin_read(s, kTestdev + "resource2", 9, 2, got) == 2);
  CHECK((got[0] == 0x78 && got[1] == 0x56));
  REQUIRE(io->accesses.size() == 5);
  CHECK((io->accesses[0].bar == 2 && io->accesses[0].offset == 4 && io->accesses[0].len == 4 &&
         io->accesses[0].write));
  CHECK((io->accesses[4].offset == 9 && io->accesses[4].len == 2 && !io->accesses[4].write));
  // Other sizes: EINVAL, and the model sees nothing.
  CHECK(bin_read(s, kTestdev + "resource2", 0, 3) == -EINVAL);
  CHECK(bin_read(s, kTestdev + "resource2", 0, 8) == -EINVAL);
  CHECK(bin_write(s, kTestdev + "resource2", 0, word, 3) == -EINVAL);
  // Cut at the end first: 8 bytes at 0x1c are 4, 2 bytes at 0x1f are 1.
  CHECK(bin_read(s, kTestdev + "resource2", 0x1c, 8) == 4);
  CHECK(bin_read(s, kTestdev + "resource2", 0x1f, 2) == 1);
  CHECK(bin_read(s, kTestdev + "resource2", 0x1e, 3) == 2);
  CHECK(bin_read(s, kTestdev + "resource2", 0x1d, 3) == -EINVAL);
  CHECK(io->accesses.size() == 8);
  // At or past the end: 0 for a read, EFBIG for a write, and no access.
  CHECK(bin_read(s, kTestdev + "resource2", 0x20, 4) == 0);
  CHECK(bin_write(s, kTestdev + "resource2", 0x20, word, 4) == -EFBIG);
  CHECK(io->accesses.size() == 8);
  dev->model = std::move(testdev);
}

TEST_CASE("kstrtoul(s, 0): C's bases, an optional '+' and newline, nothing else", "[sysfs]") {
  u64 v = 0;
  CHECK((cuse::kstrtoul("1", &v) == 0 && v == 1));
  CHECK((cuse::kstrtoul("1\n", &v) == 0 && v == 1));
  CHECK((cuse::kstrtoul("+7", &v) == 0 && v == 7));
  CHECK((cuse::kstrtoul("0x1F", &v) == 0 && v == 31));
  CHECK((cuse::kstrtoul("010", &v) == 0 && v == 8));
  CHECK((cuse::kstrtoul("0", &v) == 0 && v == 0));
  CHECK((cuse::kstrtoul("18446744073709551615", &v) == 0 && v == ~u64{0}));
  CHECK((cuse::kstrtoul(std::string_view("1\0junk", 6), &v) == 0 && v == 1));  // a C string
  CHECK(cuse::kstrtoul("18446744073709551616", &v) == ERANGE);
  CHECK(cuse::kstrtoul("", &v) == EINVAL);
  CHECK(cuse::kstrtoul("\n", &v) == EINVAL);
  CHECK(cuse::kstrtoul(" 1", &v) == EINVAL);
  CHECK(cuse::kstrtoul("1 ", &v) == EINVAL);
  CHECK(cuse::kstrtoul("1\n\n", &v) == EINVAL);
  CHECK(cuse::kstrtoul("-1", &v) == EINVAL);
  CHECK(cuse::kstrtoul("08", &v) == EINVAL);  // octal
  CHECK(cuse::kstrtoul("0x", &v) == EINVAL);  // "0" in octal, then "x"
  CHECK(cuse::kstrtoul("0xg", &v) == EINVAL);
}

TEST_CASE("remove, rescan, reset: write-only, a number each; reset resets, remove is refused",
          "[sysfs]") {
  Harness h;
  SysfsFiles s(h.emu);
  CHECK(file(s, kTestdev + "remove").mode == 0220);
  CHECK(file(s, kTestdev + "rescan").mode == 0220);
  CHECK(file(s, kTestdev + "reset").mode == 0200);
  for (const char* name : {"remove", "rescan", "reset"}) {
    INFO(name);
    CHECK(open_errno(s, kTestdev + name, O_RDONLY) == EACCES);
    CHECK(open_errno(s, kTestdev + name, O_WRONLY) == 0);
    CHECK(store(s, kTestdev + name, "yes") == -EINVAL);
    CHECK(store(s, kTestdev + name, "") == -EINVAL);
  }
  CHECK(store(s, kTestdev + "rescan", "1\n") == 2);
  CHECK(store(s, kTestdev + "rescan", "0") == 1);
  CHECK(store(s, kTestdev + "remove", "0") == 1);
  CHECK(store(s, kTestdev + "remove", "1") == -EBUSY);
  CHECK(store(s, kTestdev + "reset", "2") == -EINVAL);
  CHECK(store(s, kTestdev + "reset", "0") == -EINVAL);
  // reset: the function's BAR back to its power-on contents.
  core::Device* dev = nullptr;
  for (const auto& g : h.emu.groups())
    for (const auto& d : g->devices())
      if (d->spec().bdf == "0000:00:01.0") dev = d.get();
  REQUIRE(dev != nullptr);
  const u8 ones[4] = {1, 1, 1, 1};
  u8 got[4] = {};
  dev->model->bar_write(0, 0x40, ones, 4);
  dev->model->bar_read(0, 0x40, got, 4);
  CHECK(got[0] == 1);
  CHECK(store(s, kTestdev + "reset", "1\n") == 2);
  dev->model->bar_read(0, 0x40, got, 4);
  CHECK((got[0] == 0 && got[3] == 0));
}

TEST_CASE("reset of a device whose reset fails: EIO, and it cannot be opened again", "[sysfs]") {
  std::string error;
  auto topo = core::Topology::parse(R"(
[[iommu]]
name = "dmar0"
model = "vtd"
[[group]]
id = 1
iommu = "dmar0"
devices = [{ bdf = "0000:00:01.0", fail_reset = true }]
)",
                                    &error);
  REQUIRE(topo.has_value());
  Harness h(std::move(*topo));
  SysfsFiles s(h.emu);
  CHECK(store(s, kTestdev + "reset", "1") == -EIO);
  // The device is in a bad state: binding it (open_device) fails.
  const int dev = h.open("vfio/devices/vfio0");
  const int iommufd = h.open("iommu");
  REQUIRE((dev >= 0 && iommufd >= 0));
  vfio_device_bind_iommufd b{};
  b.argsz = sizeof(b);
  b.iommufd = iommufd;
  CHECK(h.fails(dev, VFIO_DEVICE_BIND_IOMMUFD, &b) == EIO);
}

}  // namespace
}  // namespace vfio_emu::test
