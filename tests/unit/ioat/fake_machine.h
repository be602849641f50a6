// What an I/OAT device model sees of a machine, faked for its unit tests: IOVA ranges backed by
// buffers with read/write permission (a DmaPort that records every access and can run a hook in
// the middle of one), an interrupt sink that records vectors, and a driver's view of BAR0.
#pragma once

#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "devices/dma_port.h"
#include "devices/ioat/ioat.h"

namespace vfio_emu::devices::ioat::testing {

struct Access {
  bool write;
  u64 iova;
  u64 len;
  bool ok;
};

class FakeMemory : public DmaPort {
 public:
  // Backs [iova, iova + len) with zeroed bytes; returns them for the test to fill and check.
  u8* map(u64 iova, u64 len, bool readable = true, bool writable = true) {
    std::lock_guard lock(mu_);
    Region& r = regions_[iova];
    r.bytes.assign(len, 0);
    r.readable = readable;
    r.writable = writable;
    return r.bytes.data();
  }
  void unmap(u64 iova) {
    std::lock_guard lock(mu_);
    regions_.erase(iova);
  }
  // The driver's CPU writing and reading its own memory: not DMA, not logged. False when the
  // range is not mapped.
  bool poke(u64 iova, const void* src, u64 len) {
    std::lock_guard lock(mu_);
    u8* p = locate(iova, len);
    if (p) std::memcpy(p, src, len);
    return p != nullptr;
  }
  bool peek(u64 iova, void* dst, u64 len) {
    std::lock_guard lock(mu_);
    u8* p = locate(iova, len);
    if (p) std::memcpy(dst, p, len);
    return p != nullptr;
  }
  // Every access fails with `e` (ENXIO: the device has no domain), or 0 for normal service.
  void fail_all(int e) { fail_all_ = e; }

  Status read(u64 iova, void* dst, u64 len) override {
    u8* p = find(iova, len, false);
    record({false, iova, len, p != nullptr});
    if (fail_all_) return err(fail_all_);
    if (!p) return err(EFAULT);
    std::memcpy(dst, p, len);
    return {};
  }
  Status write(u64 iova, const void* src, u64 len) override {
    u8* p = find(iova, len, true);
    record({true, iova, len, p != nullptr});
    if (fail_all_) return err(fail_all_);
    if (!p) return err(EFAULT);
    std::memcpy(p, src, len);
    return {};
  }

  std::vector<Access> accesses() {
    std::lock_guard lock(mu_);
    return log_;
  }
  void clear_log() {
    std::lock_guard lock(mu_);
    log_.clear();
  }
  // Accesses that touched [iova, iova + len).
  size_t count(u64 iova, u64 len, bool write) {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const Access& a : log_)
      if (a.write == write && a.iova < iova + len && iova < a.iova + a.len) ++n;
    return n;
  }

  // Runs before the access is served (outside any lock of the device: the model must allow MMIO
  // from here, as a program's MMIO may come at any moment of a DMA).
  std::function<void(const Access&)> on_access;

 private:
  struct Region {
    std::vector<u8> bytes;
    bool readable = true;
    bool writable = true;
  };

  Region* region_of(u64 iova, u64 len) {
    auto it = regions_.upper_bound(iova);
    if (it == regions_.begin()) return nullptr;
    --it;
    Region& r = it->second;
    const u64 off = iova - it->first;
    if (off >= r.bytes.size() || len > r.bytes.size() - off) return nullptr;
    return &r;
  }
  u8* locate(u64 iova, u64 len) {
    auto it = regions_.upper_bound(iova);
    if (it == regions_.begin()) return nullptr;
    --it;
    if (!region_of(iova, len)) return nullptr;
    return it->second.bytes.data() + (iova - it->first);
  }
  u8* find(u64 iova, u64 len, bool write) {
    std::lock_guard lock(mu_);
    Region* r = region_of(iova, len);
    if (!r || (write ? !r->writable : !r->readable)) return nullptr;
    return locate(iova, len);
  }
  void record(const Access& a) {
    {
      std::lock_guard lock(mu_);
      log_.push_back(a);
    }
    if (on_access) on_access(a);
  }

  std::mutex mu_;
  std::map<u64, Region> regions_;
  std::vector<Access> log_;
  int fail_all_ = 0;
};

class FakeInterrupts : public InterruptSink {
 public:
  void msix(u32 vector) override {
    std::lock_guard lock(mu_);
    vectors_.push_back(vector);
  }
  std::vector<u32> vectors() {
    std::lock_guard lock(mu_);
    return vectors_;
  }
  void clear() {
    std::lock_guard lock(mu_);
    vectors_.clear();
  }

 private:
  std::mutex mu_;
  std::vector<u32> vectors_;
};

// A device with its fake machine, and the register accesses a driver makes.
struct Bench {
  explicit Bench(IoatConfig cfg = {}) {
    auto r = IoatDevice::create(std::move(cfg), mem, irq);
    if (r.ok()) dev = r.take();
  }

  u8 rd8(u64 off) { return static_cast<u8>(dev->mmio_read(off, 1)); }
  u16 rd16(u64 off) { return static_cast<u16>(dev->mmio_read(off, 2)); }
  u32 rd32(u64 off) { return static_cast<u32>(dev->mmio_read(off, 4)); }
  u64 rd64(u64 off) { return dev->mmio_read(off, 8); }
  void wr8(u64 off, u8 v) { dev->mmio_write(off, v, 1); }
  void wr16(u64 off, u16 v) { dev->mmio_write(off, v, 2); }
  void wr32(u64 off, u32 v) { dev->mmio_write(off, v, 4); }
  void wr64(u64 off, u64 v) { dev->mmio_write(off, v, 8); }

  // Channel `n` register `reg`.
  static u64 ch(u64 reg, u32 n = 0) { return channel_base(n) + reg; }

  u64 chansts(u32 n = 0) { return rd64(ch(kChanSts, n)); }
  ChanState state(u32 n = 0) { return static_cast<ChanState>(chansts(n) & kChanStsStateMask); }
  u32 chanerr(u32 n = 0) { return rd32(ch(kChanErr, n)); }

  // The selftests' ioat_reset(): clear CHANERR, CHANCMD RESET, poll until RESET reads clear.
  void channel_reset(u32 n = 0) {
    wr32(ch(kChanErr, n), rd32(ch(kChanErr, n)));
    wr8(ch(kChanCmd, n), kChanCmdReset);
  }

  // Writes descriptor `d` at `iova` (which must be mapped).
  bool put(u64 iova, const DmaDescriptor& d) { return mem.poke(iova, &d, sizeof d); }
  u64 completion(u64 iova) {
    u64 v = 0;
    mem.peek(iova, &v, sizeof v);
    return v;
  }

  FakeMemory mem;
  FakeInterrupts irq;
  std::unique_ptr<IoatDevice> dev;
};

inline DmaDescriptor copy_desc(u64 src, u64 dst, u32 size, u64 next) {
  DmaDescriptor d{};
  d.size = size;
  d.ctl.op = static_cast<u32>(Op::kCopy);
  d.src_addr = src;
  d.dst_addr = dst;
  d.next = next;
  return d;
}

// Linux's __ioat_start_null_desc: null, interrupt, completion write, size 1.
inline DmaDescriptor null_desc(u64 next) {
  DmaDescriptor d{};
  d.size = 1;
  d.ctl.null = 1;
  d.ctl.int_en = 1;
  d.ctl.compl_write = 1;
  d.next = next;
  return d;
}

}  // namespace vfio_emu::devices::ioat::testing
