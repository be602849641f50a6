// The shared BAR memory (devices/bar_window.h) and the register mirror that keeps a register file
// coherent with it (devices/register_mirror.h): what a program's stores become, what publishing
// may and may not overwrite, in which order doorbells are taken; and testdev's BAR0 in a window.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstring>
#include <vector>

#include "devices/bar_window.h"
#include "devices/register_mirror.h"
#include "devices/testdev/testdev.h"
#include "tests/unit/devices/program_mapping.h"

using namespace vfio_emu;
using namespace vfio_emu::devices;
using vfio_emu::devices::testing::ProgramMapping;

namespace {

std::unique_ptr<BarFile> make_file(u64 bar0, u64 bar2 = 0) {
  std::array<u64, BarFile::kBars> sizes{};
  sizes[0] = bar0;
  sizes[2] = bar2;
  auto f = BarFile::create("bar-window-test", sizes);
  REQUIRE(f.ok());
  return f.take();
}

}  // namespace

TEST_CASE("BarFile: every BAR at its region offset, shared with other mappings",
          "[devices][bar-window]") {
  auto f = make_file(0x4000, 0x2000);
  REQUIRE(f->window(0) != nullptr);
  REQUIRE(f->window(2) != nullptr);
  CHECK(f->window(1) == nullptr);
  CHECK(f->window(6) == nullptr);
  CHECK(f->window(0)->size() == 0x4000);
  // Sparse: the file ends at BAR2's end, 2 << 40 + 8 KiB, without 2 TiB of memory.
  CHECK(::lseek(f->fd(), 0, SEEK_END) == static_cast<off_t>((u64{2} << 40) + 0x2000));
  ProgramMapping prog0(f->fd(), 0, 0x4000), prog2(f->fd(), 2, 0x2000);
  prog0.store<u32>(0x10, 0xdeadbeef);
  CHECK(f->window(0)->load(0x10, 4) == 0xdeadbeef);
  f->window(2)->store(0x8, 8, 0x1122334455667788);
  CHECK(prog2.load<u64>(0x8) == 0x1122334455667788);
  CHECK(prog0.load<u64>(0x8) == 0);  // BARs do not alias
  CHECK(f->window(0)->compare_exchange(0x10, 4, 0xdeadbeef, 1));
  CHECK_FALSE(f->window(0)->compare_exchange(0x10, 4, 0xdeadbeef, 2));
  CHECK(prog0.load<u32>(0x10) == 1);
}

TEST_CASE("RegisterMirror: a store is collected once, publish never overwrites one",
          "[devices][bar-window]") {
  auto f = make_file(0x1000);
  ProgramMapping prog(f->fd(), 0, 0x1000);
  using Role = MirroredRegister::Role;
  RegisterMirror m(*f->window(0), {{0x00, 2, Role::kPlain},
                                   {0x06, 2, Role::kDoorbell},
                                   {0x08, 8, Role::kStatus},
                                   {0x10, 8, Role::kPlain},
                                   {0x04, 1, Role::kPlain}});
  std::vector<RegisterMirror::Write> w;
  CHECK(m.collect(w) == 0);

  // Published values appear in the window; status last in the order.
  const std::vector<size_t>& order = m.publish_order();
  REQUIRE(order.size() == 5);
  CHECK(order.back() == 2);
  m.publish(2, 0x300001);
  m.publish(0, 0x1234);
  CHECK(prog.load<u64>(0x08) == 0x300001);
  CHECK(prog.load<u16>(0x00) == 0x1234);
  CHECK(m.collect(w) == 0);  // our own values are not the program's writes

  // The program's stores: the doorbell comes last whatever the offsets.
  prog.store<u64>(0x10, 0xabc000);
  prog.store<u8>(0x04, 0x20);
  prog.store<u16>(0x06, 7);
  REQUIRE(m.collect(w) == 3);
  CHECK(w[0].offset == 0x10);
  CHECK(w[0].value == 0xabc000);
  CHECK(w[1].offset == 0x04);
  CHECK(w[1].value == 0x20);
  CHECK(w[2].offset == 0x06);
  CHECK(w[2].value == 7);
  w.clear();
  CHECK(m.collect(w) == 0);  // once

  // Publishing over a register the program stored to since the last scan: the store wins and is
  // collected next.
  prog.store<u8>(0x04, 0x04);
  m.publish(4, 0x00);
  CHECK(prog.load<u8>(0x04) == 0x04);
  REQUIRE(m.collect(w) == 1);
  CHECK(w[0].value == 0x04);
  w.clear();
  m.publish(4, 0x00);  // now taken: the model's value shows
  CHECK(prog.load<u8>(0x04) == 0x00);

  // The limit: a store of the value already shown is not seen.
  prog.store<u16>(0x06, 7);
  CHECK(m.collect(w) == 0);
  // Widths are masked: a 16-bit register publishes 16 bits only.
  m.publish(0, 0xffff0042);
  CHECK(prog.load<u16>(0x00) == 0x0042);
  CHECK(prog.load<u16>(0x02) == 0);
}

TEST_CASE("RegisterMirror: what a driver waits on is published last, commands after status",
          "[devices][bar-window]") {
  // A driver polls a command register until the device took the command, then reads the status
  // it left (I/OAT: CHANCMD reset, then CHANSTS): the status must show before the command does.
  auto f = make_file(0x1000);
  using Role = MirroredRegister::Role;
  RegisterMirror m(*f->window(0), {{0x04, 1, Role::kCommand},
                                   {0x08, 8, Role::kStatus},
                                   {0x00, 2, Role::kPlain},
                                   {0x06, 2, Role::kDoorbell}});
  CHECK(m.publish_order() == std::vector<size_t>{2, 3, 1, 0});
}

TEST_CASE("RegisterMirror: a command stored after a doorbell is applied after it",
          "[devices][bar-window]") {
  // A driver rings the doorbell and then resets or suspends the channel (an abort, an error
  // path) before the next scan: the scan sees both, and the device must take them in the
  // program's order. (The other order, a command then a doorbell, does not come in one scan from
  // a driver: it waits until the command is taken, which needs a scan, before it rings.)
  auto f = make_file(0x1000);
  ProgramMapping prog(f->fd(), 0, 0x1000);
  using Role = MirroredRegister::Role;
  RegisterMirror m(*f->window(0), {{0x00, 2, Role::kPlain},
                                   {0x04, 1, Role::kCommand},
                                   {0x06, 2, Role::kDoorbell},
                                   {0x10, 8, Role::kPlain}});
  std::vector<RegisterMirror::Write> w;
  prog.store<u64>(0x10, 0xabc000);
  prog.store<u16>(0x06, 1);
  prog.store<u8>(0x04, 0x20);
  REQUIRE(m.collect(w) == 3);
  CHECK(w[0].offset == 0x10);
  CHECK(w[1].offset == 0x06);
  CHECK(w[2].offset == 0x04);
}

TEST_CASE("testdev: a window is BAR0, coherent with pread/pwrite both ways",
          "[devices][bar-window][testdev]") {
  TestDevice dev(PciIds{0x1b36, 0x0005, 0});
  CHECK(dev.bar_mappable(0));
  CHECK_FALSE(dev.bar_mappable(1));
  const u8 before[4] = {9, 8, 7, 6};
  dev.bar_write(0, 0x100, before, 4);
  auto f = make_file(TestDevice::kBar0Size);
  dev.attach_window(0, f->window(0));
  ProgramMapping prog(f->fd(), 0, TestDevice::kBar0Size);
  CHECK(prog.load<u32>(0x100) == 0x06070809);  // what was written before moves into the window
  prog.store<u32>(0x200, 0xcafef00d);
  u8 out[4] = {};
  dev.bar_read(0, 0x200, out, 4);
  u32 v;
  std::memcpy(&v, out, 4);
  CHECK(v == 0xcafef00d);
  const u8 in[2] = {0x55, 0xaa};
  dev.bar_write(0, 0x3ffe, in, 2);
  CHECK(prog.load<u16>(0x3ffe) == 0xaa55);
  dev.reset();
  CHECK(prog.load<u32>(0x200) == 0);
  // Taken away: the BAR keeps what the window held.
  prog.store<u32>(0x300, 0x12345678);
  dev.attach_window(0, nullptr);
  dev.bar_read(0, 0x300, out, 4);
  std::memcpy(&v, out, 4);
  CHECK(v == 0x12345678);
}
