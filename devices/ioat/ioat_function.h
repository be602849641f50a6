// The I/OAT PCI function (model "ioat"): what the drivers see around the DMA engine of
// devices/ioat/ioat.h. A PCI Express root-complex integrated endpoint with Intel's Skylake-SP
// CBDMA ids (8086:2021, class 0x088000, as Linux's ioat driver and the ioat driver of Linux's VFIO
// selftests match it), 4 KiB of config space with a capability list (power management, MSI-X, PCI
// Express), and one 16 KiB 64-bit memory BAR: the engine's registers, the MSI-X table at 0x2000 and
// the PBA at 0x3000 (one vector per channel).
//
// The MSI-X table is vfio-pci's to virtualise: accesses to it through the BAR region read all
// ones and drop writes (vfio_pci_bar_rw excludes it); vectors are programmed and masked with
// VFIO_DEVICE_SET_IRQS. A channel's completion interrupt is its vector.
//
// The engine runs on a worker thread of its own that sleeps while nothing is queued: a doorbell
// (a DMACOUNT write) wakes it.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include "devices/device_model.h"
#include "devices/ioat/ioat.h"

namespace vfio_emu::devices::ioat {

class IoatFunction final : public DeviceModel {
 public:
  static constexpr u64 kMsixTableOffset = 0x2000;
  static constexpr u64 kMsixPbaOffset = 0x3000;
  static constexpr u32 kChannels = 1;

  IoatFunction() = default;
  ~IoatFunction() override;

  std::string_view name() const override { return "ioat"; }
  u32 config_size() const override { return 4096; }
  void power_on_config(std::span<u8> config, std::span<u8> write_mask) const override;
  u64 bar_size(u32 bar) const override { return bar == 0 ? kBar0Size : 0; }
  void bar_read(u32 bar, u64 offset, u8* out, u64 len) override;
  void bar_write(u32 bar, u64 offset, const u8* in, u64 len) override;
  void reset() override;
  void connect(DmaPort* dma, InterruptSink* irq) override;

 private:
  void stop();
  void run();

  std::mutex mu_;  // engine_ and the worker's life
  std::shared_ptr<IoatDevice> engine_;
  std::thread worker_;
  std::atomic<bool> stopping_{false};
};

}  // namespace vfio_emu::devices::ioat
