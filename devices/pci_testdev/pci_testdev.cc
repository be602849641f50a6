#include "devices/pci_testdev/pci_testdev.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>

namespace vfio_emu::devices {
namespace {

// PCITestDevHdr: test (u8), width (u8), pad, offset (le32), data (u8), pad, count (le32), name.
constexpr size_t kHdrTest = 0, kHdrWidth = 1, kHdrOffset = 4, kHdrData = 8, kHdrCount = 12,
                 kHdrName = 16;
constexpr u32 kTestsPerBar = 3;  // IOTEST_MAX_TEST
constexpr const char* kTestNames[kTestsPerBar] = {"no-eventfd", "wildcard-eventfd",
                                                  "datamatch-eventfd"};
constexpr u64 kIoTestMemSize = 2048, kIoTestIoSize = 128;  // IOTEST_MEMSIZE, IOTEST_IOSIZE

u32 get32(const std::vector<u8>& b, size_t off) {
  u32 v;
  std::memcpy(&v, &b[off], 4);
  return v;
}

// The accesses vfio_pci_core_do_io_rw makes for [offset, offset + len) (VFIO_PCI_IO_WIDTH_8):
// the widest of 8, 4, 2, 1 that is aligned and fits. On an I/O BAR ioread64/iowrite64 are
// the _lo_hi pair of 4-byte port accesses. f(addr, width, index into the buffer).
template <class F>
void for_each_access(bool io, u64 offset, u64 len, F f) {
  u64 done = 0;
  while (done < len) {
    const u64 left = len - done, at = offset + done;
    u32 w = 1;
    if (left >= 8 && at % 8 == 0) w = 8;
    else if (left >= 4 && at % 4 == 0) w = 4;
    else if (left >= 2 && at % 2 == 0) w = 2;
    if (w == 8 && io) {
      f(at, 4, done);
      f(at + 4, 4, done + 4);
    } else {
      f(at, w, done);
    }
    done += w;
  }
}

}  // namespace

PciTestDevice::PciTestDevice() : shown_(kMmioSize, 0) {
  // pci_testdev_realize.
  for (u32 i = 0; i < kTests; ++i) {
    Test& t = tests_[i];
    const bool mem = i < kTestsPerBar;
    const std::string name =
        fmt::format("{}-{}", mem ? "mmio" : "portio", kTestNames[i % kTestsPerBar]);
    t.header.assign(kHdrName + name.size() + 1, 0);  // bufsize
    std::memcpy(&t.header[kHdrName], name.data(), name.size());
    t.bar = mem ? 0 : 1;
    t.offset = static_cast<u32>((mem ? kIoTestMemSize : kIoTestIoSize) + i);
    t.match_data = i % kTestsPerBar != 1;  // all but wildcard-eventfd
    t.has_eventfd = i % kTestsPerBar != 0;  // all but no-eventfd
    t.data = t.match_data ? kDataMatch : kNoMatch;
    t.header[kHdrTest] = static_cast<u8>(i);
    t.header[kHdrWidth] = 1;  // IOTEST_ACCESS_WIDTH
    std::memcpy(&t.header[kHdrOffset], &t.offset, 4);
    t.header[kHdrData] = t.data;
  }
}

void PciTestDevice::power_on_config(std::span<u8> config, std::span<u8> write_mask) const {
  std::fill(config.begin(), config.end(), u8{0});
  std::fill(write_mask.begin(), write_mask.end(), u8{0});
  auto put16 = [](std::span<u8> s, size_t off, u16 v) { std::memcpy(&s[off], &v, 2); };
  auto put32 = [](std::span<u8> s, size_t off, u32 v) { std::memcpy(&s[off], &v, 4); };
  put16(config, 0x00, 0x1b36);  // PCI_VENDOR_ID_REDHAT
  put16(config, 0x02, 0x0005);  // PCI_DEVICE_ID_REDHAT_TEST
  config[0x08] = 0x00;          // revision
  put16(config, 0x0a, 0x00ff);  // pci_config_set_class(PCI_CLASS_OTHERS): class 0x00ff00
  put32(config, 0x10, 0x0);     // BAR0: 32-bit memory, not prefetchable
  put32(config, 0x14, 0x1);     // BAR1: I/O space
  put16(config, 0x2c, 0x1af4);  // PCI_SUBVENDOR_ID_REDHAT_QUMRANET (pci.c's default)
  put16(config, 0x2e, 0x1100);  // PCI_SUBDEVICE_ID_QEMU
  config[0x3d] = 0;             // "no interrupt pin"
  // pci_init_wmask, and pci_register_bar's ~(size - 1) for each BAR.
  put16(write_mask, 0x04, 0x0507);  // IO, MEMORY, MASTER, SERR, INTX_DISABLE
  write_mask[0x0c] = 0xff;          // cache line size
  put32(write_mask, 0x10, ~static_cast<u32>(kMmioSize - 1));
  put32(write_mask, 0x14, ~static_cast<u32>(kPortioSize - 1));
  write_mask[0x3c] = 0xff;  // interrupt line
  std::fill(write_mask.begin() + 0x40, write_mask.end(), u8{0xff});  // device-specific space
}

u64 PciTestDevice::bar_size(u32 bar) const {
  return bar == 0 ? kMmioSize : bar == 1 ? kPortioSize : 0;
}

u8 PciTestDevice::read_byte_locked(u64 addr) const {
  if (current_ < 0) return 0;
  const Test& t = tests_[static_cast<size_t>(current_)];
  if (addr + 1 >= t.header.size()) return 0;  // `addr + size >= test->bufsize`
  return t.header[addr];
}

u64 PciTestDevice::read_access_locked(u64 addr, u32 width) {
  u64 v = 0;
  for (u32 i = 0; i < width; ++i) v |= u64{read_byte_locked(addr + i)} << (8 * i);
  return v;
}

void PciTestDevice::count_locked(Test& t) {
  const u32 count = get32(t.header, kHdrCount) + 1;  // wraps as QEMU's uint32_t does
  std::memcpy(&t.header[kHdrCount], &count, 4);
}

void PciTestDevice::write_byte_locked(u32 bar, u64 addr, u8 value) {
  if (addr == kHdrTest) {  // pci_testdev_reset, then start the test if there is one
    current_ = -1;
    if (value >= kTestsPerBar) return;
    const u32 t = bar * kTestsPerBar + value;
    std::memset(&tests_[t].header[kHdrCount], 0, 4);
    current_ = static_cast<int>(t);
    return;
  }
  if (current_ < 0) return;
  Test& t = tests_[static_cast<size_t>(current_)];
  if (addr != t.offset) return;
  if (t.match_data && value != t.data) return;  // the size, 1, always matches
  count_locked(t);
}

void PciTestDevice::write_access_locked(u32 bar, u64 addr, u64 value, u32 width) {
  // memory_region_dispatch_write_eventfds: a write the running test's ioeventfd matches
  // (its region, offset, size 1, data) goes to the eventfd and not to the device.
  if (current_ >= 0) {
    Test& t = tests_[static_cast<size_t>(current_)];
    if (t.has_eventfd && t.bar == bar && addr == t.offset && width == 1 &&
        (!t.match_data || value == t.data)) {
      ++t.eventfd_writes;
      return;
    }
  }
  for (u32 i = 0; i < width; ++i)  // impl.max_access_size 1: byte by byte, low address first
    write_byte_locked(bar, addr + i, static_cast<u8>(value >> (8 * i)));
}

void PciTestDevice::bar_read(u32 bar, u64 offset, u8* out, u64 len) {
  const u64 size = bar_size(bar);
  if (offset >= size) return;
  len = std::min(len, size - offset);
  std::lock_guard lock(mu_);
  for_each_access(bar_is_io(bar), offset, len, [&](u64 addr, u32 w, u64 at) {
    const u64 v = read_access_locked(addr, w);
    std::memcpy(out + at, &v, w);  // little-endian host
  });
}

void PciTestDevice::bar_write(u32 bar, u64 offset, const u8* in, u64 len) {
  const u64 size = bar_size(bar);
  if (offset >= size) return;
  len = std::min(len, size - offset);
  std::lock_guard lock(mu_);
  for_each_access(bar_is_io(bar), offset, len, [&](u64 addr, u32 w, u64 at) {
    u64 v = 0;
    std::memcpy(&v, in + at, w);
    write_access_locked(bar, addr, v, w);
  });
  publish_locked(shown_);
}

void PciTestDevice::publish_locked(const std::vector<u8>& expected) {
  if (window_ == nullptr) return;
  const std::vector<u8> was = expected;  // `expected` may be shown_ itself
  for (u64 i = 0; i < kMmioSize; ++i) {
    const u8 want = read_byte_locked(i);
    shown_[i] = was[i];
    if (want != was[i] && window_->compare_exchange(i, 1, was[i], want)) shown_[i] = want;
  }
}

void PciTestDevice::settle() {
  std::lock_guard lock(mu_);
  if (window_ == nullptr) return;
  std::vector<u8> scanned(kMmioSize);
  bool changed = false;
  for (u64 off = 0; off < kMmioSize; off += 8) {
    const u64 v = window_->load(off, 8);
    std::memcpy(&scanned[off], &v, 8);
    if (std::memcmp(&scanned[off], &shown_[off], 8) != 0) changed = true;
  }
  if (!changed) return;
  for (u64 i = 0; i < kMmioSize; ++i)  // a store through the mapping: a 1-byte write
    if (scanned[i] != shown_[i]) write_access_locked(0, i, scanned[i], 1);
  publish_locked(scanned);
}

void PciTestDevice::attach_window(u32 bar, BarWindow* window) {
  if (bar != 0 || (window != nullptr && window->size() < kMmioSize)) return;
  std::lock_guard lock(mu_);
  window_ = window;
  if (window_ == nullptr) return;
  for (u64 i = 0; i < kMmioSize; ++i) {
    shown_[i] = read_byte_locked(i);
    window_->store(i, 1, shown_[i]);
  }
}

void PciTestDevice::reset() {
  std::lock_guard lock(mu_);
  current_ = -1;  // qdev_pci_testdev_reset; each test's count is cleared when it starts
  publish_locked(shown_);
}

std::string PciTestDevice::state() {
  std::lock_guard lock(mu_);
  if (current_ < 0) return "no test selected";
  const Test& t = tests_[static_cast<size_t>(current_)];
  return fmt::format("test {} ({}): count {}, {} writes taken by its ioeventfd", current_,
                     reinterpret_cast<const char*>(&t.header[kHdrName]),
                     get32(t.header, kHdrCount), t.eventfd_writes);
}

u64 PciTestDevice::eventfd_writes(u32 test) {
  std::lock_guard lock(mu_);
  return test < kTests ? tests_[test].eventfd_writes : 0;
}

}  // namespace vfio_emu::devices
