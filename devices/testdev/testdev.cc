#include "devices/testdev/testdev.h"

#include <algorithm>
#include <cstring>

namespace vfio_emu::devices {

void TestDevice::power_on_config(std::span<u8> config, std::span<u8> write_mask) const {
  // A type-0 PCI header with one 16 KiB 32-bit memory BAR (BAR0), as a minimal PCI function.
  std::fill(config.begin(), config.end(), u8{0});
  std::fill(write_mask.begin(), write_mask.end(), u8{0});
  auto put16 = [&](size_t off, u16 v) { std::memcpy(&config[off], &v, 2); };
  auto put32 = [&](size_t off, u32 v) { std::memcpy(&config[off], &v, 4); };
  put16(0x00, ids_.vendor);
  put16(0x02, ids_.device);
  config[0x08] = 0x01;                                    // revision
  config[0x09] = static_cast<u8>(ids_.class_code);        // prog-if
  config[0x0a] = static_cast<u8>(ids_.class_code >> 8);   // subclass
  config[0x0b] = static_cast<u8>(ids_.class_code >> 16);  // class
  config[0x0e] = 0x00;                                    // header type 0
  put32(0x10, 0);                                         // BAR0: 32-bit memory at 0
  put16(0x2c, ids_.vendor);                               // subsystem vendor
  put16(0x2e, ids_.device);
  config[0x3d] = 0x01;                                    // INTA#
  // Writable: command (memory, bus master, INTx disable), BAR0 address bits, interrupt line.
  put16(0x04, 0);
  write_mask[0x04] = 0x06;  // memory space, bus master
  write_mask[0x05] = 0x04;  // INTx disable
  const u32 bar_mask = ~static_cast<u32>(kBar0Size - 1);
  std::memcpy(&write_mask[0x10], &bar_mask, 4);
  write_mask[0x3c] = 0xff;
}

void TestDevice::bar_read(u32 bar, u64 offset, u8* out, u64 len) {
  if (bar != 0 || offset >= kBar0Size) return;
  std::lock_guard lock(mu_);
  std::memcpy(out, bar0_locked() + offset, std::min<u64>(len, kBar0Size - offset));
}

void TestDevice::bar_write(u32 bar, u64 offset, const u8* in, u64 len) {
  if (bar != 0 || offset >= kBar0Size) return;
  std::lock_guard lock(mu_);
  std::memcpy(bar0_locked() + offset, in, std::min<u64>(len, kBar0Size - offset));
}

void TestDevice::reset() {
  std::lock_guard lock(mu_);
  std::memset(bar0_locked(), 0, kBar0Size);
}

void TestDevice::attach_window(u32 bar, BarWindow* window) {
  if (bar != 0 || (window != nullptr && window->size() < kBar0Size)) return;
  std::lock_guard lock(mu_);
  if (window != nullptr) {
    std::memcpy(window->data(), bar0_locked(), kBar0Size);  // the BAR moves into the window
  } else if (window_ != nullptr) {
    std::memcpy(bar0_.data(), window_->data(), kBar0Size);
  }
  window_ = window;
}

}  // namespace vfio_emu::devices
