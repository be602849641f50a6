// An emulated Intel I/OAT DMA engine (CB3.x, Skylake-SP id): BAR0's register file and the
// channels that execute descriptor chains through a DmaPort.
//
// Processing model. A doorbell (a DMACOUNT write) only queues work and wakes waiters; descriptors
// run in process(), called by the unit tests directly or by a worker thread that sleeps in
// wait_for_work() while nothing is queued. process() holds the device lock only between
// descriptors, never during DMA, so the program's MMIO (CHANSTS polls, a reset) is served while a
// copy runs. A command that changes the state of a channel whose descriptor is in flight (RESET,
// SUSPEND, ABORT) takes effect when that descriptor returns; until then CHANCMD reads RESET set,
// which the drivers already poll for.
//
// Bounds. A doorbell queues at most 65535 descriptors (DMACOUNT is a 16-bit running count), a
// descriptor moves at most 2^XFERCAP bytes, and process(budget) runs at most `budget` of them.
// A chain that loops is not an error (the selftests link one descriptor to itself): the count is
// what ends it. An error halts the channel and nothing more runs on it until a reset.
#pragma once

#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "base/ints.h"
#include "base/log_rate_limit.h"
#include "base/result.h"
#include "devices/dma_port.h"
#include "devices/ioat/ioat_hw.h"

namespace vfio_emu::devices::ioat {

struct IoatConfig {
  u32 channels = 1;           // 1..kMaxChannels (the selftests use channel 0)
  u8 xfercap_log = 20;        // 12..24: 2^20 = 1 MiB per descriptor (our default)
  u8 version = kCbVer33;      // kCbVer32 or kCbVer33
  // Where halts and refused writes are logged; null: spdlog's default logger.
  std::shared_ptr<spdlog::logger> log;
};

// A register of BAR0: its first byte and its width.
struct RegisterSpan {
  u64 offset;
  u32 width;
};
// Every register of BAR0 with `channels` channels, in offset order.
std::vector<RegisterSpan> bar0_registers(u32 channels);

class IoatDevice {
 public:
  // Errors: EINVAL for a configuration outside the ranges above.
  static Result<std::unique_ptr<IoatDevice>> create(IoatConfig config, DmaPort& dma,
                                                    InterruptSink& irq);
  ~IoatDevice();
  IoatDevice(const IoatDevice&) = delete;
  IoatDevice& operator=(const IoatDevice&) = delete;

  // BAR0 accesses of 1, 2, 4 or 8 bytes at any offset below kBar0Size, little-endian, as the CPU
  // would issue them. Bytes outside every register read 0 and ignore writes; read-only registers
  // ignore writes. An access of another size, or past the BAR, reads 0 / is ignored.
  u64 mmio_read(u64 offset, u32 size);
  void mmio_write(u64 offset, u64 value, u32 size);

  // Runs up to `budget` queued descriptors (round-robin over the channels) and returns how many
  // ran, failed ones included. Safe to call from any thread; a channel runs on one thread at a
  // time. Must not be called from the DmaPort or InterruptSink callbacks.
  u32 process(u32 budget = kU32Max);
  // Whether process() has something to run now.
  bool has_work();
  // Sleeps until process() has work, wake() is called, or `timeout` passes; returns has_work().
  bool wait_for_work(std::chrono::nanoseconds timeout);
  // Wakes every wait_for_work() (e.g. to stop a worker).
  void wake();

  // Device reset (PCI FLR / VFIO_DEVICE_RESET): every register to its reset value, every channel
  // halted. Waits for a descriptor in flight on another thread to return, so no DMA of the old
  // state happens after it; must not be called from the DmaPort or InterruptSink callbacks.
  void reset();

  u32 channels() const { return config_.channels; }

  static constexpr u32 kU32Max = ~u32{0};

 private:
  struct Channel {
    u32 index = 0;
    // Registers.
    u16 chanctrl = 0;
    u16 dmacount = 0;
    u64 chansts = static_cast<u64>(ChanState::kHalted);
    u64 chainaddr = 0;
    u64 chancmp = 0;
    u64 cdar = 0;
    u32 chanerr = 0;
    u32 chanerr_mask = 0;
    u32 dcactrl = 0;
    // Engine state.
    u16 done_count = 0;          // descriptors completed since CHAINADDR was written (mod 2^16)
    u64 next_desc = 0;           // address of the next descriptor to fetch
    bool next_from_chainaddr = true;  // next_desc came from CHAINADDR, not from a `next` field
    bool error_halted = false;   // halted by an error: doorbells are ignored until a reset
    bool in_flight = false;      // a descriptor of this channel is running outside the lock
    bool reset_pending = false;  // CHANCMD RESET arrived while in flight
    bool suspend_pending = false;
    bool abort_pending = false;
    bool irq_pending = false;    // an interrupt came due while not armed; fires on INT_REARM
    std::vector<u8> bounce;      // copy buffer, used only by the thread that has it in flight
  };

  // What one descriptor did, computed outside the lock.
  struct Outcome {
    u32 error = 0;          // CHANERR bits; 0 on success
    u64 desc_addr = 0;
    DmaDescriptor desc{};
    bool fetched = false;   // desc holds the descriptor
    int dma_errno = 0;      // the DmaPort's errno for a DMA error
    u64 fault_iova = 0;
  };

  IoatDevice(IoatConfig config, DmaPort& dma, InterruptSink& irq);

  ChanState state(const Channel& ch) const;
  void set_state(Channel& ch, ChanState s);
  u16 outstanding(const Channel& ch) const { return static_cast<u16>(ch.dmacount - ch.done_count); }
  bool runnable(const Channel& ch) const;
  bool has_work_locked() const;
  bool interrupts_enabled() const;

  // Register access, lock held. `mask` selects the bytes of the register being written.
  u64 read_reg_locked(u64 reg_offset, u32 width);
  // Returns the MSI-X vector to signal after unlocking, or -1.
  int write_reg_locked(u64 reg_offset, u32 width, u64 data, u64 mask);
  int write_channel_reg_locked(Channel& ch, u64 reg, u64 data, u64 mask);
  void chancmd_locked(Channel& ch, u8 cmd);
  void doorbell_locked(Channel& ch);
  void reset_channel_locked(Channel& ch);
  // Applies commands that waited for the descriptor in flight to return.
  void settle_locked(Channel& ch);
  // Marks an interrupt of `ch` due; returns the vector to signal now, or -1 (not armed, disabled).
  int raise_locked(Channel& ch);

  Outcome execute(Channel& ch, u64 desc_addr, bool from_chainaddr, u32 max_size);
  void copy(Channel& ch, const DmaDescriptor& d, Outcome& out);
  void log_halt(const Channel& ch, const Outcome& o, u32 error) const;

  IoatConfig config_;
  DmaPort& dma_;
  InterruptSink& irq_;
  std::shared_ptr<spdlog::logger> log_;
  // A program provokes halts and refused writes at will: their lines are rate-limited per channel
  // (a burst of 10, then 2 per second), what was suppressed counted in the next line.
  mutable LogRateLimiter log_limit_{LogRateLimitConfig{10, 2, 20, 4, kMaxChannels}};
  bool log_allowed(const Channel& ch) const;

  std::mutex mu_;
  std::condition_variable work_cv_;     // doorbells, resumes, wake()
  std::condition_variable idle_cv_;     // a descriptor returned (reset() waits on it)
  u64 wake_gen_ = 0;                    // bumped by wake()
  u32 reset_waiters_ = 0;               // reset() calls waiting for descriptors in flight
  u32 next_channel_ = 0;                // round-robin start of process()
  u8 genctrl_ = 0;
  u8 intrctrl_ = 0;
  u16 intrdelay_ = 0;
  u32 attnstatus_ = 0;
  std::array<Channel, kMaxChannels> chans_;
};

}  // namespace vfio_emu::devices::ioat
