// QEMU's PCI test device (devices/pci_testdev/): config space as QEMU 7.2 presents it, the test
// headers on both BARs, what counts and what an ioeventfd takes, hostile writes, the BAR ends,
// and the mapped window.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "devices/bar_window.h"
#include "devices/device_model.h"
#include "devices/pci_testdev/pci_testdev.h"
#include "tests/unit/devices/program_mapping.h"

using namespace vfio_emu;
using namespace vfio_emu::devices;
using vfio_emu::devices::testing::ProgramMapping;

namespace {

using Dev = PciTestDevice;

u32 get32(const std::vector<u8>& b, size_t off) {
  u32 v;
  std::memcpy(&v, &b[off], 4);
  return v;
}

u64 read(Dev& d, u32 bar, u64 off, u32 len) {
  u8 out[8] = {};
  d.bar_read(bar, off, out, len);
  u64 v = 0;
  std::memcpy(&v, out, len);
  return v;
}

void write(Dev& d, u32 bar, u64 off, u64 value, u32 len) {
  u8 in[8];
  std::memcpy(in, &value, 8);
  d.bar_write(bar, off, in, len);
}

u32 count(Dev& d, u32 bar = 0) { return static_cast<u32>(read(d, bar, 12, 4)); }

std::string header_name(Dev& d, u32 bar) {
  std::string s;
  for (u64 i = 16; i < 64; ++i) {
    const char c = static_cast<char>(read(d, bar, i, 1));
    if (c == 0) break;
    s += c;
  }
  return s;
}

}  // namespace

TEST_CASE("pci-testdev: config space as QEMU 7.2 presents it", "[devices][pci-testdev]") {
  auto made = make_device_model("pci-testdev", PciIds{0x1234, 0x5678, 0x020000});
  REQUIRE(made.ok());
  DeviceModel& m = **made;
  CHECK(m.name() == "pci-testdev");
  REQUIRE(m.config_size() == 256);
  std::vector<u8> cfg(256), mask(256);
  m.power_on_config(cfg, mask);
  CHECK(get32(cfg, 0x00) == 0x00051b36);  // the topology's ids do not apply
  CHECK(get32(cfg, 0x04) == 0);           // command, status
  CHECK(get32(cfg, 0x08) == 0x00ff0000);  // revision 0, class 0x00ff00
  CHECK(get32(cfg, 0x0c) == 0);           // header type 0
  CHECK(get32(cfg, 0x10) == 0x0);         // BAR0: 32-bit memory
  CHECK(get32(cfg, 0x14) == 0x1);         // BAR1: I/O
  for (u32 off = 0x18; off < 0x28; off += 4) CHECK(get32(cfg, off) == 0);
  CHECK(get32(cfg, 0x2c) == 0x11001af4);  // subsystem: QEMU's default
  CHECK(cfg[0x34] == 0);                  // no capabilities
  CHECK(cfg[0x3d] == 0);                  // no interrupt pin
  CHECK(get32(mask, 0x00) == 0);          // ids read-only
  CHECK(get32(mask, 0x04) == 0x0507);     // IO MEM MASTER SERR INTX_DISABLE; status not writable
  CHECK(mask[0x0c] == 0xff);
  CHECK(mask[0x0d] == 0);
  CHECK((cfg[0x10] | get32(mask, 0x10)) == 0xfffff000u);  // what BAR sizing reads back
  CHECK((get32(cfg, 0x14) | get32(mask, 0x14)) == 0xffffff01u);
  CHECK(get32(mask, 0x18) == 0);
  CHECK(mask[0x3c] == 0xff);
  CHECK(mask[0x3d] == 0);
  for (u32 off = 0x40; off < 0x100; ++off) CHECK(mask[off] == 0xff);

  CHECK(m.bar_size(0) == 4096);
  CHECK(m.bar_size(1) == 256);
  for (u32 bar = 2; bar < 6; ++bar) CHECK(m.bar_size(bar) == 0);
  CHECK_FALSE(m.bar_is_io(0));
  CHECK(m.bar_is_io(1));
  CHECK(m.bar_mappable(0));
  CHECK_FALSE(m.bar_mappable(1));
  CHECK_FALSE(m.has_function_reset());
}

TEST_CASE("pci-testdev: the test headers", "[devices][pci-testdev]") {
  Dev d;
  // No test selected: every byte of both BARs reads 0.
  for (u64 off = 0; off < 64; off += 8) CHECK(read(d, 0, off, 8) == 0);
  CHECK(read(d, 1, 0, 4) == 0);
  CHECK(d.state() == "no test selected");

  const char* names[6] = {"mmio-no-eventfd",   "mmio-wildcard-eventfd",   "mmio-datamatch-eventfd",
                          "portio-no-eventfd", "portio-wildcard-eventfd", "portio-datamatch-eventfd"};
  for (u32 i = 0; i < 6; ++i) {
    const u32 bar = i / 3;
    write(d, bar, 0, i % 3, 1);
    for (u32 readbar = 0; readbar < 2; ++readbar) {  // both BARs read the current test
      CHECK(read(d, readbar, 0, 1) == i);             // test
      CHECK(read(d, readbar, 1, 1) == 1);             // width
      CHECK(read(d, readbar, 4, 4) == (bar == 0 ? 2048u : 128u) + i);  // offset
      CHECK(read(d, readbar, 8, 1) == (i % 3 == 1 ? 0xCEu : 0xFAu));  // data
      CHECK(count(d, readbar) == 0);
      CHECK(header_name(d, readbar) == names[i]);
    }
    // bufsize = 16 + strlen(name) + 1: `addr + size >= bufsize` reads 0, so the last character
    // is the last byte that is not 0.
    const u64 last = 16 + std::strlen(names[i]) - 1;
    CHECK(read(d, 0, last, 1) == static_cast<u8>(names[i][std::strlen(names[i]) - 1]));
    CHECK(read(d, 0, last + 1, 1) == 0);
    CHECK(read(d, 0, 2048 + i, 1) == 0);  // the test's own offset reads 0
  }
  // An 8-byte read (one access), a 16-byte read (two) and an unaligned one agree.
  write(d, 0, 0, 2, 1);
  CHECK(read(d, 0, 0, 8) == 0x0000080200000102ull);  // test 2, width 1, offset 2050
  u8 sixteen[16];
  d.bar_read(0, 0, sixteen, 16);
  u8 odd[7];
  d.bar_read(0, 3, odd, 7);
  CHECK(std::memcmp(odd, sixteen + 3, 7) == 0);
  CHECK(sixteen[4] == 0x02);  // offset 2050, little-endian
  CHECK(sixteen[5] == 0x08);
}

TEST_CASE("pci-testdev: what counts, and what the ioeventfd takes", "[devices][pci-testdev]") {
  Dev d;
  SECTION("mmio-no-eventfd: every write whose byte at 2048 is 0xFA") {
    write(d, 0, 0, 0, 1);
    write(d, 0, 2048, 0xFA, 1);
    CHECK(count(d) == 1);
    write(d, 0, 2048, 0xCE, 1);  // other data
    write(d, 0, 2049, 0xFA, 1);  // other offset
    CHECK(count(d) == 1);
    write(d, 0, 2048, 0xFFFFFFFA, 4);  // wider: the device sees single bytes
    write(d, 0, 2046, 0x00FA0000, 4);  // another access's third byte lands on 2048
    CHECK(count(d) == 3);
    CHECK(d.eventfd_writes(0) == 0);
    write(d, 0, 0, 0, 1);  // starting the test again clears its count
    CHECK(count(d) == 0);
  }
  SECTION("mmio-wildcard-eventfd: a 1-byte write at 2049 goes to the eventfd, a wider one counts") {
    write(d, 0, 0, 1, 1);
    write(d, 0, 2049, 0x12, 1);
    write(d, 0, 2049, 0xCE, 1);
    CHECK(count(d) == 0);
    CHECK(d.eventfd_writes(1) == 2);
    write(d, 0, 2048, 0x3400, 2);  // a 2-byte access: no eventfd matches; byte 2049 counts
    CHECK(count(d) == 1);
  }
  SECTION("mmio-datamatch-eventfd: 0xFA alone goes to the eventfd, other data does nothing") {
    write(d, 0, 0, 2, 1);
    write(d, 0, 2050, 0xFA, 1);
    write(d, 0, 2050, 0xFB, 1);
    CHECK(count(d) == 0);
    CHECK(d.eventfd_writes(2) == 1);
    write(d, 0, 2050, 0x00FA, 2);  // 2 bytes wide: the device sees 0xFA at 2050
    write(d, 0, 2048, 0xFA000000, 4);
    CHECK(count(d) == 1);  // the 4-byte access has 0x00 at 2050
    write(d, 0, 2048, 0x00FA0000, 4);
    CHECK(count(d) == 2);
  }
  SECTION("portio tests: selected and counted on BAR1; their eventfd is on BAR1 only") {
    write(d, 1, 0, 1, 1);  // portio-wildcard-eventfd, offset 132
    CHECK(read(d, 0, 0, 1) == 4);
    write(d, 1, 132, 0x55, 1);
    CHECK(count(d, 1) == 0);
    CHECK(d.eventfd_writes(4) == 1);
    write(d, 0, 132, 0x55, 1);  // the same write on BAR0: no eventfd there, the device counts
    CHECK(count(d, 1) == 1);
    write(d, 1, 0, 0, 1);  // portio-no-eventfd, offset 131
    write(d, 1, 131, 0xFA, 1);
    write(d, 1, 128, 0xFA000000, 4);
    CHECK(count(d, 1) == 2);
    // An 8-byte access of an I/O BAR is two 4-byte port accesses; each reaches the device.
    write(d, 1, 128, 0x00000000FA000000ull, 8);
    CHECK(count(d, 1) == 3);
  }
}

TEST_CASE("pci-testdev: hostile values in the test register stop the test, nothing more",
          "[devices][pci-testdev]") {
  Dev d;
  for (u64 v : {3ull, 4ull, 0x80ull, 0xffull}) {
    write(d, 0, 0, 1, 1);
    REQUIRE(read(d, 0, 0, 1) == 1);
    write(d, 0, 0, v, 1);  // pci_testdev_reset, then out of range: no test
    CHECK(read(d, 0, 0, 8) == 0);
    CHECK(d.state() == "no test selected");
  }
  write(d, 0, 0, 0xffffff02, 4);  // only byte 0 is the test register
  CHECK(read(d, 0, 0, 1) == 2);
  write(d, 0, 0, 0xffffffffffffffffull, 8);
  CHECK(read(d, 0, 0, 8) == 0);
  write(d, 1, 0, 0x0201, 2);  // BAR1: test 3 + 1
  CHECK(read(d, 1, 0, 1) == 4);
  // Writes of header fields change nothing.
  write(d, 1, 4, 0, 4);
  write(d, 1, 12, 0xffffffff, 4);
  CHECK(read(d, 1, 4, 4) == 132);
  CHECK(count(d, 1) == 0);
}

TEST_CASE("pci-testdev: accesses at and past the BAR ends", "[devices][pci-testdev]") {
  Dev d;
  write(d, 0, 0, 0, 1);
  u8 buf[64];
  for (u32 bar = 0; bar < 8; ++bar) {
    const u64 size = d.bar_size(bar);
    for (u64 off : {size - 1, size, size + 1, u64{0xffffffffffffffff}, u64{1} << 40}) {
      for (u64 len : {u64{0}, u64{1}, u64{3}, u64{8}, u64{64}}) {
        std::memset(buf, 0x5a, sizeof buf);
        d.bar_read(bar, off, buf, len);
        d.bar_write(bar, off, buf, len);
      }
    }
  }
  // A read cut at the end fills what is inside only.
  std::memset(buf, 0x5a, sizeof buf);
  d.bar_read(0, 4095, buf, 8);
  CHECK(buf[0] == 0);
  CHECK(buf[1] == 0x5a);
  std::memset(buf, 0x5a, sizeof buf);
  d.bar_read(1, 250, buf, 64);
  CHECK(buf[5] == 0);
  CHECK(buf[6] == 0x5a);
  CHECK(read(d, 0, 0, 1) == 0);  // still test 0
  CHECK(d.state() == "test 0 (mmio-no-eventfd): count 0, 0 writes taken by its ioeventfd");
}

TEST_CASE("pci-testdev: reset stops the test", "[devices][pci-testdev]") {
  Dev d;
  write(d, 0, 0, 0, 1);
  write(d, 0, 2048, 0xFA, 1);
  d.reset();
  CHECK(read(d, 0, 0, 8) == 0);
  CHECK(read(d, 0, 8, 8) == 0);
  write(d, 0, 2048, 0xFA, 1);  // no test: nothing counts
  write(d, 0, 0, 0, 1);
  CHECK(count(d) == 0);
}

TEST_CASE("pci-testdev: the mapped BAR0 shows the header and carries stores",
          "[devices][pci-testdev][bar-window]") {
  std::array<u64, BarFile::kBars> sizes{};
  sizes[0] = Dev::kMmioSize;
  auto f = BarFile::create("pci-testdev test", sizes);
  REQUIRE(f.ok());
  Dev d;
  write(d, 0, 0, 2, 1);
  d.attach_window(0, (*f)->window(0));
  ProgramMapping prog((*f)->fd(), 0, Dev::kMmioSize);
  CHECK(prog.load<u8>(0) == 2);
  CHECK(prog.load<u32>(4) == 2050);
  CHECK(prog.load<u8>(8) == 0xFA);
  CHECK(std::string(reinterpret_cast<const char*>(prog.data() + 16)) == "mmio-datamatch-eventfd");

  prog.store<u8>(0, 0);  // select test 0 through the mapping
  d.settle();
  CHECK(prog.load<u32>(4) == 2048);
  prog.store<u8>(2048, 0xFA);  // counts; the byte reads 0 again, as on QEMU
  d.settle();
  CHECK(prog.load<u8>(2048) == 0);
  prog.store<u8>(2048, 0xFA);
  d.settle();
  CHECK(prog.load<u32>(12) == 2);
  CHECK(count(d) == 2);
  // A store elsewhere is ignored, and the window reads as QEMU does again.
  prog.store<u32>(100, 0xdeadbeef);
  prog.store<u32>(12, 0);
  d.settle();
  CHECK(prog.load<u32>(100) == 0);
  CHECK(prog.load<u32>(12) == 2);
  // pwrite reaches the window.
  write(d, 0, 0, 1, 1);
  CHECK(prog.load<u8>(0) == 1);
  CHECK(std::string(reinterpret_cast<const char*>(prog.data() + 16)) == "mmio-wildcard-eventfd");
  // A store through the mapping is a 1-byte write: the wildcard test's eventfd takes it.
  prog.store<u8>(2049, 0x77);
  d.settle();
  CHECK(d.eventfd_writes(1) == 1);
  CHECK(prog.load<u32>(12) == 0);
  CHECK(prog.load<u8>(2049) == 0);
  d.reset();
  CHECK(prog.load<u64>(0) == 0);
  d.attach_window(0, nullptr);
  prog.store<u8>(0, 1);
  d.settle();  // no window: nothing to collect
  CHECK(read(d, 0, 0, 1) == 0);
}

TEST_CASE("pci-testdev: random accesses of any width and offset keep the header consistent",
          "[devices][pci-testdev][fuzz]") {
  std::array<u64, BarFile::kBars> sizes{};
  sizes[0] = Dev::kMmioSize;
  auto f = BarFile::create("pci-testdev fuzz", sizes);
  REQUIRE(f.ok());
  Dev d;
  d.attach_window(0, (*f)->window(0));
  ProgramMapping prog((*f)->fd(), 0, Dev::kMmioSize);
  u64 seed = 0x9e3779b97f4a7c15ull;
  auto next = [&] {
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    return seed;
  };
  // Bounded by count and by time: a loaded machine does fewer rounds.
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  u8 buf[80];
  int rounds = 0;
  for (; rounds < 200000 && std::chrono::steady_clock::now() < end; ++rounds) {
    const u64 r = next();
    const u32 bar = static_cast<u32>(r % 3);  // BAR2 has size 0
    // Offsets cluster near 0, the test offsets and the ends, with some anywhere.
    const u64 bases[] = {0, 2044, 124, d.bar_size(bar), next()};
    const u64 off = bases[(r >> 8) % 5] + ((r >> 16) % 16) - 8;
    const u64 len = (r >> 24) % 80;
    for (u64 i = 0; i < len; ++i) buf[i] = static_cast<u8>(next() % 8 == 0 ? 0xFA : next());
    switch ((r >> 32) % 4) {
      case 0: d.bar_read(bar, off, buf, len); break;
      case 1: d.bar_write(bar, off, buf, len); break;
      case 2: prog.store<u8>(off % Dev::kMmioSize, buf[0]); d.settle(); break;
      case 3: if ((r >> 40) % 64 == 0) d.reset(); break;
    }
    // What reads show is a header, or nothing.
    const u8 test = static_cast<u8>(read(d, 0, 0, 1));
    const u64 hdr = read(d, 0, 0, 8);
    if (hdr == 0 && read(d, 0, 8, 8) == 0) continue;
    REQUIRE(test < 6);
    REQUIRE(read(d, 0, 1, 1) == 1);
    REQUIRE(read(d, 0, 4, 4) == (test < 3 ? 2048u : 128u) + test);
    REQUIRE(prog.load<u64>(0) == hdr);  // the window shows the same
  }
  INFO(rounds << " rounds");
  CHECK(rounds > 0);
}
