#include "devices/ioat/ioat_function.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace vfio_emu::devices::ioat {

namespace {

constexpr u8 kCapPm = 0x01;
constexpr u8 kCapMsix = 0x11;
constexpr u8 kCapExp = 0x10;
constexpr u32 kPmAt = 0x40, kMsixAt = 0x50, kExpAt = 0x60;

// Whether [offset, offset + len) touches the MSI-X table or PBA (vfio-pci's excluded range).
bool in_msix(u64 offset, u64 len) {
  constexpr u64 first = IoatFunction::kMsixTableOffset;
  constexpr u64 last = IoatFunction::kMsixPbaOffset + 8 - 1;  // one 64-bit PBA word
  return offset <= last && offset + len - 1 >= first;
}

// The widest naturally aligned access (8, 4, 2, 1 bytes) at `offset` that fits in `len`: how a
// CPU issues a pread/pwrite of the region as MMIO.
u32 access_size(u64 offset, u64 len) {
  for (u32 size : {8u, 4u, 2u}) if (len >= size && offset % size == 0) return size;
  return 1;
}

// The function whose mu_ this thread holds (an interrupt signalled from inside a register write
// publishes without taking it again).
thread_local IoatFunction* t_locked = nullptr;

class LockedScope {
 public:
  LockedScope(IoatFunction* f, std::mutex& mu) : lock_(mu), prev_(t_locked) { t_locked = f; }
  ~LockedScope() { t_locked = prev_; }

 private:
  std::lock_guard<std::mutex> lock_;
  IoatFunction* prev_;
};

// Polling of the window by the worker: quick right after the program touched a register, slow
// when it has not for a while (a store cannot wake anyone).
std::chrono::microseconds poll_interval(std::chrono::steady_clock::duration quiet) {
  using namespace std::chrono;
  if (quiet < milliseconds(50)) return microseconds(20);
  if (quiet < seconds(1)) return milliseconds(1);
  if (quiet < seconds(10)) return milliseconds(10);
  return milliseconds(50);
}

}  // namespace

IoatFunction::~IoatFunction() { stop(); }

void IoatFunction::power_on_config(std::span<u8> config, std::span<u8> write_mask) const {
  std::fill(config.begin(), config.end(), u8{0});
  std::fill(write_mask.begin(), write_mask.end(), u8{0});
  auto put16 = [&](size_t off, u16 v) { std::memcpy(&config[off], &v, 2); };
  auto put32 = [&](size_t off, u32 v) { std::memcpy(&config[off], &v, 4); };
  auto mask16 = [&](size_t off, u16 v) { std::memcpy(&write_mask[off], &v, 2); };
  auto mask32 = [&](size_t off, u32 v) { std::memcpy(&write_mask[off], &v, 4); };
  put16(0x00, kVendorIntel);
  put16(0x02, kDeviceIdSkx);
  put16(0x06, 0x0010);        // status: capability list
  config[0x08] = 0x04;        // revision
  config[0x09] = 0x00;        // prog-if
  config[0x0a] = 0x80;        // subclass: other system peripheral
  config[0x0b] = 0x08;        // class: base system peripheral
  put32(0x10, 0x00000004);    // BAR0: 64-bit memory, not prefetchable, at 0
  put16(0x2c, kVendorIntel);  // subsystem
  put16(0x2e, 0x0000);
  config[0x34] = kPmAt;       // capability pointer
  config[0x3d] = 0x01;        // INTA#
  // Writable: command (memory, bus master, INTx disable), BAR0's address bits, interrupt line.
  mask16(0x04, 0x0406);
  mask32(0x10, ~static_cast<u32>(kBar0Size - 1) & ~0xfu);
  mask32(0x14, 0xffffffffu);
  write_mask[0x3c] = 0xff;
  // Power management, version 3: D0/D3hot in PMCSR bits 1:0.
  config[kPmAt] = kCapPm;
  config[kPmAt + 1] = kMsixAt;
  put16(kPmAt + 2, 0x0003);
  mask16(kPmAt + 4, 0x0003);
  // MSI-X: one vector per channel; table and PBA in BAR0. Enable and function mask writable.
  config[kMsixAt] = kCapMsix;
  config[kMsixAt + 1] = kExpAt;
  put16(kMsixAt + 2, static_cast<u16>(kChannels - 1));
  mask16(kMsixAt + 2, 0xc000);
  put32(kMsixAt + 4, static_cast<u32>(kMsixTableOffset));  // BIR 0
  put32(kMsixAt + 8, static_cast<u32>(kMsixPbaOffset));    // BIR 0
  // PCI Express capability, version 2, root-complex integrated endpoint (type 9).
  config[kExpAt] = kCapExp;
  config[kExpAt + 1] = 0x00;
  put16(kExpAt + 2, 0x0092);
  mask16(kExpAt + 8, 0x000f);  // device control: error reporting enables
}

void IoatFunction::bar_read(u32 bar, u64 offset, u8* out, u64 len) {
  if (bar != 0) return;
  LockedScope lock(this, mu_);
  sync_locked();  // stores made through a mapping come first
  while (len != 0) {
    const u32 size = access_size(offset, len);
    if (in_msix(offset, size) || !engine_) {
      // vfio-pci's exclusion of the MSI-X table reads all ones; a disconnected engine reads 0.
      std::memset(out, engine_ ? 0xff : 0x00, size);
    } else {
      const u64 v = engine_->mmio_read(offset, size);
      std::memcpy(out, &v, size);
    }
    offset += size;
    out += size;
    len -= size;
  }
}

void IoatFunction::bar_write(u32 bar, u64 offset, const u8* in, u64 len) {
  if (bar != 0) return;
  LockedScope lock(this, mu_);
  sync_locked();
  while (len != 0) {
    const u32 size = access_size(offset, len);
    if (!in_msix(offset, size) && engine_) {
      u64 v = 0;
      std::memcpy(&v, in, size);
      rearm_halt_locked(offset, v, size);
      engine_->mmio_write(offset, v, size);
    }
    offset += size;
    in += size;
    len -= size;
  }
  publish_locked();
}

void IoatFunction::attach_window(u32 bar, BarWindow* window) {
  if (bar != 0 || (window != nullptr && window->size() < kBar0Size)) return;
  LockedScope lock(this, mu_);
  mirror_.reset();
  window_ = window;
  if (window_ == nullptr) return;
  regs_ = bar0_registers(kChannels);
  show_halt_.fill(true);
  std::vector<MirroredRegister> mirrored;
  for (const RegisterSpan& r : regs_) {
    auto role = MirroredRegister::Role::kPlain;
    if (r.offset >= kChannelStride && r.offset % kChannelStride == kChanDmaCount)
      role = MirroredRegister::Role::kDoorbell;
    // What a driver polls to learn that a chain finished is shown after the rest: by the time it
    // reads "done", every other register shows the new state, and its next stores cannot be
    // overwritten by a publish still under way (a store of the value shown before would be).
    if (r.offset >= kChannelStride && r.offset % kChannelStride == kChanSts)
      role = MirroredRegister::Role::kStatus;
    // Drivers poll CHANCMD until a reset is taken, then read CHANSTS: it is shown after it.
    if (r.offset >= kChannelStride && r.offset % kChannelStride == kChanCmd)
      role = MirroredRegister::Role::kCommand;
    mirrored.push_back(MirroredRegister{r.offset, r.width, role});
  }
  mirror_ = std::make_unique<RegisterMirror>(*window_, std::move(mirrored));
  publish_locked();
  if (engine_) engine_->wake();  // the worker starts polling
}

size_t IoatFunction::sync_locked() {
  if (!mirror_ || !engine_) return 0;
  writes_.clear();
  const size_t n = mirror_->collect(writes_);
  if (n == 0) return 0;  // the engine changes only by writes, process() and reset: each publishes
  for (const RegisterMirror::Write& w : writes_) {
    rearm_halt_locked(w.offset, w.value, w.width);
    engine_->mmio_write(w.offset, w.value, w.width);
  }
  mapped_writes_.fetch_add(n, std::memory_order_relaxed);
  publish_locked();
  return n;
}

// A store is the program moving on: an error-free halt it was shown is now shown as SUSPENDED,
// unless the store is the RESET or ABORT that halts the channel again.
void IoatFunction::rearm_halt_locked(u64 offset, u64 value, u32 width) {
  for (u32 ch = 0; ch < kChannels; ++ch) {
    const u64 cmd = channel_base(ch) + kChanCmd;
    const bool halts = offset <= cmd && cmd < offset + width &&
                       ((value >> (8 * (cmd - offset))) & (kChanCmdReset | kChanCmdAbort)) != 0;
    show_halt_[ch] = halts;
  }
}

std::string IoatFunction::state() {
  LockedScope lock(this, mu_);
  if (!engine_) return "engine stopped";
  static constexpr const char* kNames[] = {"active", "done", "suspended", "halted"};
  std::string s;
  for (u32 ch = 0; ch < kChannels; ++ch) {
    const u64 sts = engine_->mmio_read(channel_base(ch) + kChanSts, 8);
    const u64 st = sts & kChanStsStateMask;
    const u32 err = static_cast<u32>(engine_->mmio_read(channel_base(ch) + kChanErr, 4));
    s += fmt::format("{}chan {} {}", ch ? "; " : "", ch, st < 4 ? kNames[st] : "?");
    if (err != 0) s += fmt::format(" CHANERR {:#x}", err);
    s += fmt::format(" DMACOUNT {:#x}", engine_->mmio_read(channel_base(ch) + kChanDmaCount, 2));
  }
  if (mirror_) s += fmt::format("; BAR0 mapped, {} register stores taken", mapped_writes());
  return s;
}

void IoatFunction::settle() {
  LockedScope lock(this, mu_);
  if (!mirror_ || !engine_) return;
  sync_locked();  // publishes what the stores changed
  // A halt shown as HALTED has now been seen: show it as SUSPENDED (publish only then).
  bool shown = false;
  for (bool& h : show_halt_) shown |= std::exchange(h, false);
  if (shown) publish_locked();
}

u64 IoatFunction::shown_value_locked(const RegisterSpan& reg, const u64* chan_state) {
  const u64 value = engine_->mmio_read(reg.offset, reg.width);
  if (reg.offset < kChannelStride) return value;
  const u64 rel = reg.offset % kChannelStride;
  const u32 ch = static_cast<u32>(reg.offset / kChannelStride - 1);
  if (rel == kChanSts && (value & kChanStsStateMask) == static_cast<u64>(ChanState::kHalted) &&
      !show_halt_[ch] && engine_->mmio_read(channel_base(ch) + kChanErr, 4) == 0)
    return (value & ~kChanStsStateMask) | static_cast<u64>(ChanState::kSuspended);
  if (rel != kChanChainAddr && rel != kChanDmaCount) return value;
  const u64 state = chan_state[reg.offset / kChannelStride - 1];
  const bool stopped = state == static_cast<u64>(ChanState::kSuspended) ||
                       state == static_cast<u64>(ChanState::kHalted);
  return stopped ? 0 : value;
}

void IoatFunction::publish_locked() {
  if (!mirror_ || !engine_) return;
  u64 chan_state[kChannels];
  for (u32 ch = 0; ch < kChannels; ++ch)
    chan_state[ch] = engine_->mmio_read(channel_base(ch) + kChanSts, 8) & kChanStsStateMask;
  for (size_t i : mirror_->publish_order())
    mirror_->publish(i, shown_value_locked(regs_[i], chan_state));
}

void IoatFunction::PublishingSink::msix(u32 vector) {
  if (t_locked == &f_) {
    f_.publish_locked();
  } else {
    LockedScope lock(&f_, f_.mu_);
    f_.publish_locked();
  }
  if (inner != nullptr) inner->msix(vector);
}

void IoatFunction::reset() {
  // The engine's reset waits for a descriptor in flight, whose DMA takes the emulator's locks:
  // it must not hold mu_, which BAR accesses take under Device::regions_mu.
  std::shared_ptr<IoatDevice> engine;
  {
    std::lock_guard lock(mu_);
    engine = engine_;
  }
  if (engine) engine->reset();
  LockedScope lock(this, mu_);
  show_halt_.fill(true);
  publish_locked();
}

void IoatFunction::connect(DmaPort* dma, InterruptSink* irq) {
  stop();
  if (dma == nullptr || irq == nullptr) return;
  IoatConfig config;
  config.channels = kChannels;
  config.log = spdlog::get(kDevicesLogger);  // the daemon's; null in unit tests: the default
  sink_.inner = irq;
  auto made = IoatDevice::create(config, *dma, sink_);
  if (!made) return;
  LockedScope lock(this, mu_);
  engine_ = std::shared_ptr<IoatDevice>(made.take());
  stopping_ = false;
  worker_ = std::thread([this] { run(); });
}

void IoatFunction::stop() {
  std::shared_ptr<IoatDevice> engine;
  {
    std::lock_guard lock(mu_);
    if (!engine_) return;
    stopping_ = true;
    engine_->wake();
  }
  if (worker_.joinable()) worker_.join();
  std::lock_guard lock(mu_);
  engine = std::move(engine_);
}

void IoatFunction::run() {
  IoatDevice* engine;
  {
    std::lock_guard lock(mu_);
    engine = engine_.get();
  }
  // The engine lives until stop() has joined this thread.
  auto last_change = std::chrono::steady_clock::now();
  while (!stopping_) {
    bool mapped;
    bool changed;
    {
      LockedScope lock(this, mu_);
      mapped = mirror_ != nullptr;
      changed = sync_locked() != 0;
    }
    if (engine->has_work()) {
      engine->process(64);
      LockedScope lock(this, mu_);
      publish_locked();
      changed = true;
    }
    const auto now = std::chrono::steady_clock::now();
    if (changed) last_change = now;
    if (engine->has_work()) continue;
    const std::chrono::nanoseconds wait =
        mapped ? std::chrono::nanoseconds(poll_interval(now - last_change))
               : std::chrono::nanoseconds(std::chrono::seconds(1));
    engine->wait_for_work(wait);
  }
}

}  // namespace vfio_emu::devices::ioat
