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
//
// BAR0 can be mapped (devices/bar_window.h). The worker then also keeps the window and the
// registers coherent through a RegisterMirror: it collects the program's stores, hands them to
// the engine as register writes, and shows the engine's registers in the window (before an
// interrupt is signalled, so a handler reads the state that raised it). A store cannot wake a
// thread, so the worker polls the window: every 20 us for 50 ms after the last register change,
// then every 1 ms, every 10 ms after a second of quiet and every 50 ms after ten
// (docs/ARCHITECTURE.md "BAR mmap"). Under `vfio-emu run` a program's stores to BAR0 do not
// land in the window: they trap and arrive as bar_write() calls, in order, before its next
// instruction (bar_stores_trapped).
// A suspended or halted channel shows CHAINADDR and DMACOUNT as 0 in the window, so that the
// CHAINADDR and DMACOUNT a driver writes to restart it are changes the mirror sees even when
// they repeat the previous values (the selftests' driver does exactly that).
// A channel halted without an error (a reset, an ABORT) shows HALTED until the program stores to
// BAR0 again or makes a system call on the device, and SUSPENDED after that, until its doorbell
// is taken: a driver that rings and at once polls CHANSTS must not read the HALTED the engine
// shows only because the doorbell is not seen yet (hardware takes it before the read, by PCIe
// ordering); a driver that checks for HALTED right after the reset still sees it.
// CHANSTS is shown
// after the other registers and CHANCMD after CHANSTS: drivers poll CHANCMD until a reset is
// taken and then read CHANSTS at once. A command stored right after a doorbell (an error path's
// reset) is taken after it.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include "devices/device_model.h"
#include "devices/ioat/ioat.h"
#include "devices/register_mirror.h"

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
  bool bar_mappable(u32 bar) const override { return bar == 0; }
  void attach_window(u32 bar, BarWindow* window) override;
  void settle() override;
  // BAR0: a driver rings DMACOUNT and at once polls CHANSTS, and writes back the CHANERR bits it
  // read to clear them.
  bool bar_stores_trapped(u32 bar) const override { return bar == 0; }
  std::string state() override;

  // Register writes the mirror took from the window (for the tools and tests).
  u64 mapped_writes() const { return mapped_writes_.load(std::memory_order_relaxed); }

 private:
  // Signals the engine's interrupts after showing the registers in the window.
  class PublishingSink final : public InterruptSink {
   public:
    explicit PublishingSink(IoatFunction& f) : f_(f) {}
    void msix(u32 vector) override;
    InterruptSink* inner = nullptr;

   private:
    IoatFunction& f_;
  };

  void stop();
  void run();
  // Under mu_: takes the program's stores from the window into the engine and shows the
  // engine's registers; returns how many stores were taken.
  size_t sync_locked();
  void publish_locked();
  u64 shown_value_locked(const RegisterSpan& reg, const u64* chan_state);

  std::mutex mu_;  // engine_, the window and the worker's life
  std::shared_ptr<IoatDevice> engine_;
  std::thread worker_;
  std::atomic<bool> stopping_{false};
  PublishingSink sink_{*this};
  BarWindow* window_ = nullptr;                   // under mu_
  std::unique_ptr<RegisterMirror> mirror_;        // under mu_, with window_
  std::vector<RegisterSpan> regs_;                // what mirror_ mirrors, same order
  std::vector<RegisterMirror::Write> writes_;     // scratch of sync_locked
  std::atomic<u64> mapped_writes_{0};
  // Per channel, under mu_: an error-free halt the program may not have seen yet (shown as
  // HALTED); false: shown as SUSPENDED.
  std::array<bool, kChannels> show_halt_{};
  void rearm_halt_locked(u64 offset, u64 value, u32 width);
};

}  // namespace vfio_emu::devices::ioat
