// QEMU's PCI test device (model "pci-testdev", QEMU 7.2's hw/misc/pci-testdev.c): what a program
// sees of it through vfio-pci, to the byte.
//
// Config space is QEMU's: 1b36:0005, revision 0, class 0x00ff00 (PCI_CLASS_OTHERS), subsystem
// 1af4:1100 (the ids hw/pci/pci.c gives every device that names none), no interrupt pin, no
// capabilities; BAR0 a 4 KiB 32-bit memory BAR ("pci-testdev-mmio"), BAR1 a 256-byte I/O BAR
// ("pci-testdev-portio"); the writable bits are QEMU's (pci_init_wmask: command IO, MEM, MASTER,
// SERR, INTX_DISABLE; cache line size; interrupt line; 0x40-0xff) and the BAR address bits.
// The topology's vendor/device/class do not apply: QEMU's device has no such properties.
//
// Six tests (PCITestDevHdr): mmio-no-eventfd, mmio-wildcard-eventfd, mmio-datamatch-eventfd,
// portio-no-eventfd, portio-wildcard-eventfd, portio-datamatch-eventfd. Writing N to byte 0 of
// BAR0 (BAR1) selects test N (3 + N); any other value stops the current test. Both BARs read the
// current test's header byte by byte (0 past its name's last character, and 0 with no test). A
// 1-byte store of `data` (0xFA) at the test's `offset` counts, except where the test's
// ioeventfd takes it first: QEMU (TCG, no KVM) hands a write that matches an ioeventfd exactly
// (the test's BAR, offset, 1 byte wide, and for datamatch the data) to the eventfd, not to the
// device. Wider accesses reach the device as single bytes (impl.max_access_size 1), so a 2-, 4-
// or 8-byte store whose byte at the offset matches counts. The eventfds themselves are invisible
// to a VFIO program: here a write they take only counts in eventfd_writes() (tests, `list`).
//
// Accesses: pread/pwrite arrive as vfio_pci_core_do_io_rw splits them (8, 4, 2 or 1 bytes, each
// aligned to its width; on an I/O BAR an 8-byte access is two 4-byte ones, low half first). A
// mapping of BAR0 (BAR1, as I/O space, cannot be mapped) is a window of shared memory: it shows
// what reads return, and settle() takes each byte the program changed there as a 1-byte write
// and puts the window back as reads show it. What a mapping cannot carry: a store of the value
// the window already shows (selecting test 0 while no test runs, or the running test again, is
// seen only through pwrite), the width of a store (a store through the mapping counts as a
// 1-byte write), and the order of stores made between two entries into the daemon (ascending
// offsets). `count` read through the mapping is as of the program's last call into the daemon.
//
// No reset method: a conventional function without FLR or PM capability, on a root bus, so
// Linux's pci_try_reset_function finds none (has_function_reset() false: no
// VFIO_DEVICE_FLAGS_RESET, VFIO_DEVICE_RESET is EINVAL). reset() is the qdev reset a bus reset or
// power-on does: no test selected.
#pragma once

#include <array>
#include <mutex>
#include <string>
#include <vector>

#include "devices/device_model.h"

namespace vfio_emu::devices {

class PciTestDevice final : public DeviceModel {
 public:
  static constexpr u64 kMmioSize = 4096;   // BAR0: IOTEST_MEMSIZE * 2
  static constexpr u64 kPortioSize = 256;  // BAR1: IOTEST_IOSIZE * 2
  static constexpr u32 kTests = 6;         // IOTEST_MAX
  static constexpr u8 kDataMatch = 0xFA;   // IOTEST_DATAMATCH
  static constexpr u8 kNoMatch = 0xCE;     // IOTEST_NOMATCH

  PciTestDevice();

  std::string_view name() const override { return "pci-testdev"; }
  u32 config_size() const override { return 256; }
  void power_on_config(std::span<u8> config, std::span<u8> write_mask) const override;
  u64 bar_size(u32 bar) const override;
  bool bar_is_io(u32 bar) const override { return bar == 1; }
  bool has_function_reset() const override { return false; }
  void bar_read(u32 bar, u64 offset, u8* out, u64 len) override;
  void bar_write(u32 bar, u64 offset, const u8* in, u64 len) override;
  bool bar_mappable(u32 bar) const override { return bar == 0; }
  void attach_window(u32 bar, BarWindow* window) override;
  void settle() override;
  void reset() override;
  std::string state() override;

  // Writes of test `test` (0-5) that its ioeventfd took (they did not count).
  u64 eventfd_writes(u32 test);

 private:
  struct Test {
    std::vector<u8> header;  // PCITestDevHdr and the NUL-terminated name (bufsize bytes)
    u32 bar;                 // the BAR whose region has the test's ioeventfd
    u32 offset;              // hdr->offset
    u8 data;                 // hdr->data
    bool match_data;         // every test but wildcard-eventfd
    bool has_eventfd;        // every test but no-eventfd
    u64 eventfd_writes = 0;
  };

  // One access of `width` bytes (memory_region_dispatch_read/write): the ioeventfd check, then
  // single bytes to the device.
  u64 read_access_locked(u64 addr, u32 width);
  void write_access_locked(u32 bar, u64 addr, u64 value, u32 width);
  u8 read_byte_locked(u64 addr) const;                 // pci_testdev_read, size 1
  void write_byte_locked(u32 bar, u64 addr, u8 value);  // pci_testdev_write, size 1
  void count_locked(Test& t);
  // Shows in the window what reads return, byte by byte unless the program stored there since
  // `scanned` was read (its store is collected next time).
  void publish_locked(const std::vector<u8>& scanned);

  std::mutex mu_;
  std::array<Test, kTests> tests_;
  int current_ = -1;             // under mu_: the selected test, -1 none
  BarWindow* window_ = nullptr;  // under mu_
  std::vector<u8> shown_;        // under mu_: what the window shows as far as we know
};

}  // namespace vfio_emu::devices
