// The passive test device (model "testdev"): a conventional PCI function with the topology's ids
// (QEMU's pci-testdev ids, 1b36:0005, unless the topology says otherwise), one 16 KiB 32-bit
// memory BAR (BAR0) of plain memory, INTA#, no capabilities, no DMA. What a program writes to BAR0
// it reads back; nothing else happens. BAR0 can be mapped: once a window is attached it is the
// BAR's memory, so pread/pwrite and every mapping see the same bytes. Useful for the ioctl sequences of a driver, not its
// device programming.
#pragma once

#include <mutex>
#include <vector>

#include "devices/device_model.h"

namespace vfio_emu::devices {

class TestDevice final : public DeviceModel {
 public:
  static constexpr u64 kBar0Size = 16 * 1024;

  explicit TestDevice(const PciIds& ids) : ids_(ids), bar0_(kBar0Size, 0) {}

  std::string_view name() const override { return "testdev"; }
  u32 config_size() const override { return 256; }
  void power_on_config(std::span<u8> config, std::span<u8> write_mask) const override;
  u64 bar_size(u32 bar) const override { return bar == 0 ? kBar0Size : 0; }
  void bar_read(u32 bar, u64 offset, u8* out, u64 len) override;
  void bar_write(u32 bar, u64 offset, const u8* in, u64 len) override;
  void reset() override;
  bool bar_mappable(u32 bar) const override { return bar == 0; }
  void attach_window(u32 bar, BarWindow* window) override;

 private:
  u8* bar0_locked() { return window_ != nullptr ? window_->data() : bar0_.data(); }
  PciIds ids_;
  std::mutex mu_;
  std::vector<u8> bar0_;  // under mu_; the BAR while no window is attached
  BarWindow* window_ = nullptr;  // under mu_
};

}  // namespace vfio_emu::devices
