#include "devices/ioat/ioat_function.h"

#include <algorithm>
#include <cstring>

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
  std::lock_guard lock(mu_);
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
  std::lock_guard lock(mu_);
  while (len != 0) {
    const u32 size = access_size(offset, len);
    if (!in_msix(offset, size) && engine_) {
      u64 v = 0;
      std::memcpy(&v, in, size);
      engine_->mmio_write(offset, v, size);
    }
    offset += size;
    in += size;
    len -= size;
  }
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
}

void IoatFunction::connect(DmaPort* dma, InterruptSink* irq) {
  stop();
  if (dma == nullptr || irq == nullptr) return;
  IoatConfig config;
  config.channels = kChannels;
  auto made = IoatDevice::create(config, *dma, *irq);
  if (!made) return;
  std::lock_guard lock(mu_);
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
  while (!stopping_) {
    if (engine->wait_for_work(std::chrono::seconds(1))) engine->process(64);
  }
}

}  // namespace vfio_emu::devices::ioat
