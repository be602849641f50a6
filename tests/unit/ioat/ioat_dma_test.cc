// I/OAT descriptor processing as the two drivers use it: the selftests' self-linked descriptor
// with a count, Linux's ring with a null descriptor, completion writes and MSI-X on completion,
// SUSPEND/RESUME/ABORT, the 16-bit count, and a worker thread that sleeps while idle.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>

#include "tests/unit/ioat/fake_machine.h"

using namespace vfio_emu;
using namespace vfio_emu::devices::ioat;
using namespace vfio_emu::devices::ioat::testing;
using namespace std::chrono_literals;

namespace {

constexpr u64 kDesc = 0x10000;  // descriptor ring
constexpr u64 kSrc = 0x20000;
constexpr u64 kDst = 0x40000;
constexpr u64 kCmp = 0x60000;   // completion area

void fill(u8* p, u64 len, u8 seed) {
  for (u64 i = 0; i < len; ++i) p[i] = static_cast<u8>(seed + i * 7);
}

// The selftests' __ioat_memcpy_start: one descriptor linked to itself, CHAINADDR, CHANCTRL,
// DMACOUNT = count.
void selftest_start(Bench& b, u64 src, u64 dst, u32 size, u16 count, bool interrupt) {
  DmaDescriptor d = copy_desc(src, dst, size, kDesc);
  d.ctl.int_en = interrupt;
  REQUIRE(b.put(kDesc, d));
  b.wr64(Bench::ch(kChanChainAddr), kDesc);
  b.wr16(Bench::ch(kChanCtrl), kChanCtrlIntRearm | kChanCtrlAnyErrAbortEn);
  b.wr16(Bench::ch(kChanDmaCount), count);
}

// The selftests' ioat_init after their reset.
void selftest_init(Bench& b) {
  b.channel_reset();
  REQUIRE((b.rd8(Bench::ch(kChanCmd)) & kChanCmdReset) == 0);
  REQUIRE(b.state() == ChanState::kHalted);
  b.wr8(kRegIntrCtrl, kIntrCtrlMsixVectorCtl);
}

// The descriptor page, 4 KiB of source and destination, and the completion area.
void map_small(Bench& b) {
  b.mem.map(kDesc, 0x1000);
  b.mem.map(kSrc, 0x1000);
  b.mem.map(kDst, 0x1000);
  b.mem.map(kCmp, 64);
}

}  // namespace

TEST_CASE("ioat: the selftests' memcpy, wait and suspend", "[ioat]") {
  Bench b;
  b.mem.map(kDesc, 0x1000);
  u8* src = b.mem.map(kSrc, 0x10000);
  u8* dst = b.mem.map(kDst, 0x10000);
  fill(src, 0x10000, 3);
  selftest_init(b);

  selftest_start(b, kSrc, kDst, 0x10000, 1, false);
  CHECK(b.state() == ChanState::kActive);  // queued, not yet run
  CHECK(b.dev->has_work());
  CHECK(b.dev->process() == 1);
  CHECK(std::memcmp(src, dst, 0x10000) == 0);
  CHECK(b.chansts() == (kDesc | static_cast<u64>(ChanState::kDone)));
  CHECK(b.rd64(Bench::ch(kChanCdar)) == kDesc);
  CHECK(b.chanerr() == 0);
  CHECK(b.irq.vectors().empty());
  CHECK_FALSE(b.dev->has_work());

  b.wr8(Bench::ch(kChanCmd), kChanCmdSuspend);
  CHECK(b.state() == ChanState::kSuspended);

  // The next copy rewrites CHAINADDR and rings 3: the same descriptor runs three times.
  b.mem.clear_log();
  std::memset(dst, 0, 0x10000);
  selftest_start(b, kSrc + 0x100, kDst, 0x100, 3, false);
  CHECK(b.dev->process() == 3);
  CHECK(b.mem.count(kDesc, kDescriptorSize, false) == 3);
  CHECK(b.mem.count(kDst, 0x100, true) == 3);
  CHECK(std::memcmp(src + 0x100, dst, 0x100) == 0);
  CHECK(b.state() == ChanState::kDone);
}

TEST_CASE("ioat: the selftests' send_msi raises MSI-X vector 0", "[ioat]") {
  Bench b;
  map_small(b);
  selftest_init(b);
  for (int round = 0; round < 3; ++round) {
    selftest_start(b, kSrc, kDst, 8, 1, true);
    b.dev->process();
    CHECK(b.state() == ChanState::kDone);
    CHECK(b.irq.vectors().size() == static_cast<size_t>(round + 1));
    b.wr8(Bench::ch(kChanCmd), kChanCmdSuspend);
  }
  CHECK(b.irq.vectors() == std::vector<u32>{0, 0, 0});
}

TEST_CASE("ioat: a copy larger than the bounce buffer arrives whole", "[ioat]") {
  IoatConfig cfg;
  cfg.xfercap_log = 20;
  Bench b(cfg);
  b.mem.map(kDesc, 0x1000);
  u8* src = b.mem.map(0x100000, 1 << 20);
  u8* dst = b.mem.map(0x300000, 1 << 20);
  fill(src, 1 << 20, 11);
  selftest_init(b);
  selftest_start(b, 0x100000, 0x300000, 1 << 20, 1, false);
  CHECK(b.dev->process() == 1);
  CHECK(std::memcmp(src, dst, 1 << 20) == 0);
  CHECK(b.state() == ChanState::kDone);
}

TEST_CASE("ioat: Linux's ring: null descriptor, completion writes, rearm, wrap", "[ioat]") {
  Bench b;
  constexpr int kRing = 4;
  b.mem.map(kDesc, kRing * kDescriptorSize);
  u8* src = b.mem.map(kSrc, 0x4000);
  u8* dst = b.mem.map(kDst, 0x4000);
  b.mem.map(kCmp, 64);
  fill(src, 0x4000, 5);
  auto slot = [](int i) { return kDesc + (i % kRing) * kDescriptorSize; };

  // ioat_dma_setup_interrupts (MSI-X), ioat_alloc_chan_resources, ioat_start_null_desc.
  b.wr8(kRegIntrCtrl, kIntrCtrlMsixVectorCtl | kIntrCtrlMasterIntEn);
  b.channel_reset();
  b.wr16(Bench::ch(kChanCtrl), kChanCtrlIntRearm | kChanCtrlErrIntEn | kChanCtrlErrCompletionEn |
                                   kChanCtrlAnyErrAbortEn);
  b.wr32(Bench::ch(kChanCmp), static_cast<u32>(kCmp));
  b.wr32(Bench::ch(kChanCmp) + 4, 0);
  REQUIRE(b.put(slot(0), null_desc(slot(1))));
  b.wr64(Bench::ch(kChanChainAddr), slot(0));
  b.wr16(Bench::ch(kChanDmaCount), 1);
  CHECK(b.dev->process() == 1);
  CHECK(b.completion(kCmp) == (slot(0) | static_cast<u64>(ChanState::kDone)));
  CHECK(b.irq.vectors() == std::vector<u32>{0});
  // Firing disarmed the channel and flagged it in ATTNSTATUS and INTRCTRL.
  CHECK((b.rd16(Bench::ch(kChanCtrl)) & kChanCtrlIntRearm) == 0);
  CHECK(b.rd32(kRegAttnStatus) == 1);
  CHECK((b.rd8(kRegIntrCtrl) & (kIntrCtrlIntStatus | kIntrCtrlInt)) ==
        (kIntrCtrlIntStatus | kIntrCtrlInt));
  // The cleanup rearms (writes IOAT_CHANCTRL_RUN): attention clears.
  b.wr16(Bench::ch(kChanCtrl), kChanCtrlIntRearm | kChanCtrlErrIntEn | kChanCtrlErrCompletionEn |
                                   kChanCtrlAnyErrAbortEn);
  CHECK(b.rd32(kRegAttnStatus) == 0);
  CHECK((b.rd8(kRegIntrCtrl) & kIntrCtrlIntStatus) == 0);

  // Two copies; only the last asks for a completion write and an interrupt.
  REQUIRE(b.put(slot(1), copy_desc(kSrc, kDst, 0x1000, slot(2))));
  DmaDescriptor last = copy_desc(kSrc + 0x1000, kDst + 0x1000, 0x1000, slot(3));
  last.ctl.compl_write = 1;
  last.ctl.int_en = 1;
  REQUIRE(b.put(slot(2), last));
  b.mem.clear_log();
  b.wr16(Bench::ch(kChanDmaCount), 3);  // the running count: 1 + 2
  CHECK(b.dev->process() == 2);
  CHECK(std::memcmp(src, dst, 0x2000) == 0);
  CHECK(b.mem.count(kCmp, 8, true) == 1);
  CHECK(b.completion(kCmp) == (slot(2) | static_cast<u64>(ChanState::kDone)));
  CHECK(b.irq.vectors() == std::vector<u32>{0, 0});

  // Around the end of the ring: slots 3 and 0 (rewritten) by following `next`.
  b.wr16(Bench::ch(kChanCtrl), kChanCtrlIntRearm);
  REQUIRE(b.put(slot(3), copy_desc(kSrc + 0x2000, kDst + 0x2000, 0x1000, slot(4))));
  DmaDescriptor again = copy_desc(kSrc + 0x3000, kDst + 0x3000, 0x1000, slot(5));
  again.ctl.compl_write = 1;
  REQUIRE(b.put(slot(4), again));
  b.wr16(Bench::ch(kChanDmaCount), 5);
  CHECK(b.dev->process() == 2);
  CHECK(std::memcmp(src, dst, 0x4000) == 0);
  CHECK(b.completion(kCmp) == (slot(4) | static_cast<u64>(ChanState::kDone)));
  CHECK(b.rd64(Bench::ch(kChanCdar)) == slot(4));
}

TEST_CASE("ioat: a completion write in the middle of a batch says ACTIVE", "[ioat]") {
  Bench b;
  map_small(b);
  b.wr64(Bench::ch(kChanCmp), kCmp);
  DmaDescriptor first = copy_desc(kSrc, kDst, 16, kDesc + 64);
  first.ctl.compl_write = 1;
  REQUIRE(b.put(kDesc, first));
  REQUIRE(b.put(kDesc + 64, copy_desc(kSrc, kDst, 16, kDesc + 128)));
  b.wr64(Bench::ch(kChanChainAddr), kDesc);
  b.wr16(Bench::ch(kChanDmaCount), 2);
  CHECK(b.dev->process(1) == 1);
  CHECK(b.completion(kCmp) == (kDesc | static_cast<u64>(ChanState::kActive)));
  CHECK(b.state() == ChanState::kActive);
  CHECK(b.dev->process(1) == 1);
  CHECK(b.chansts() == ((kDesc + 64) | static_cast<u64>(ChanState::kDone)));
}

TEST_CASE("ioat: interrupts follow INTRCTRL, CHANCTRL and the channel", "[ioat]") {
  IoatConfig cfg;
  cfg.channels = 2;
  Bench b(cfg);
  map_small(b);
  DmaDescriptor d = null_desc(kDesc);
  d.ctl.compl_write = 0;
  REQUIRE(b.put(kDesc, d));
  auto run = [&](u32 n) {
    b.wr64(Bench::ch(kChanChainAddr, n), kDesc);
    b.wr16(Bench::ch(kChanDmaCount, n), 1);
    REQUIRE(b.dev->process() == 1);
  };

  SECTION("interrupts disabled in INTRCTRL: nothing") {
    b.wr16(Bench::ch(kChanCtrl), kChanCtrlIntRearm);
    run(0);
    CHECK(b.irq.vectors().empty());
    CHECK(b.rd32(kRegAttnStatus) == 0);
  }
  SECTION("MSI-X mode: channel n signals vector n") {
    b.wr8(kRegIntrCtrl, kIntrCtrlMsixVectorCtl);
    b.wr16(Bench::ch(kChanCtrl, 1), kChanCtrlIntRearm);
    run(1);
    CHECK(b.irq.vectors() == std::vector<u32>{1});
    CHECK(b.rd32(kRegAttnStatus) == 2);
  }
  SECTION("master enable only: the device's one interrupt") {
    b.wr8(kRegIntrCtrl, kIntrCtrlMasterIntEn);
    b.wr16(Bench::ch(kChanCtrl, 1), kChanCtrlIntRearm);
    run(1);
    CHECK(b.irq.vectors() == std::vector<u32>{0});
  }
  SECTION("not armed: the interrupt waits for the rearm") {
    b.wr8(kRegIntrCtrl, kIntrCtrlMsixVectorCtl);
    run(0);
    CHECK(b.irq.vectors().empty());
    b.wr16(Bench::ch(kChanCtrl), kChanCtrlIntRearm);
    CHECK(b.irq.vectors() == std::vector<u32>{0});
    CHECK((b.rd16(Bench::ch(kChanCtrl)) & kChanCtrlIntRearm) == 0);
    // Only once.
    b.wr16(Bench::ch(kChanCtrl), kChanCtrlIntRearm);
    CHECK(b.irq.vectors() == std::vector<u32>{0});
  }
  SECTION("armed once: a second completion waits") {
    b.wr8(kRegIntrCtrl, kIntrCtrlMsixVectorCtl);
    b.wr16(Bench::ch(kChanCtrl), kChanCtrlIntRearm);
    b.wr64(Bench::ch(kChanChainAddr), kDesc);
    b.wr16(Bench::ch(kChanDmaCount), 2);
    CHECK(b.dev->process() == 2);
    CHECK(b.irq.vectors() == std::vector<u32>{0});
  }
}

TEST_CASE("ioat: SUSPEND, RESUME and ABORT", "[ioat]") {
  Bench b;
  map_small(b);
  b.wr64(Bench::ch(kChanCmp), kCmp);  // null_desc() asks for completion writes
  REQUIRE(b.put(kDesc, null_desc(kDesc)));
  b.wr64(Bench::ch(kChanChainAddr), kDesc);

  SECTION("suspend while queued: nothing runs until resume") {
    b.wr16(Bench::ch(kChanDmaCount), 2);
    b.wr8(Bench::ch(kChanCmd), kChanCmdSuspend);
    CHECK(b.state() == ChanState::kSuspended);
    CHECK_FALSE(b.dev->has_work());
    CHECK(b.dev->process() == 0);
    b.wr8(Bench::ch(kChanCmd), kChanCmdResume);
    CHECK(b.state() == ChanState::kActive);
    CHECK(b.dev->process() == 2);
    CHECK(b.state() == ChanState::kDone);
  }
  SECTION("suspend while a descriptor runs: it finishes, the rest waits") {
    b.wr16(Bench::ch(kChanDmaCount), 3);
    ChanState seen = ChanState::kHalted;
    bool once = true;
    b.mem.on_access = [&](const Access& a) {
      if (a.write || !once) return;
      once = false;
      b.wr8(Bench::ch(kChanCmd), kChanCmdSuspend);
      seen = b.state();
    };
    CHECK(b.dev->process() == 1);
    CHECK(seen == ChanState::kActive);  // the descriptor in flight still counts as active
    CHECK(b.state() == ChanState::kSuspended);
    CHECK(b.chansts() == (kDesc | static_cast<u64>(ChanState::kSuspended)));
    b.wr8(Bench::ch(kChanCmd), kChanCmdResume);
    CHECK(b.dev->process() == 2);
  }
  SECTION("abort halts without an error; a doorbell starts again") {
    b.wr16(Bench::ch(kChanDmaCount), 2);
    b.wr8(Bench::ch(kChanCmd), kChanCmdAbort);
    CHECK(b.state() == ChanState::kHalted);
    CHECK(b.chanerr() == 0);
    CHECK(b.dev->process() == 0);
    b.wr16(Bench::ch(kChanDmaCount), 3);
    CHECK(b.dev->process() == 3);
    CHECK(b.state() == ChanState::kDone);
  }
}

TEST_CASE("ioat: the count is 16 bits: at most 65535 per doorbell, and it wraps", "[ioat]") {
  Bench b;
  b.mem.map(kDesc, 0x1000);
  DmaDescriptor d = null_desc(kDesc);  // a loop: only the count ends it
  d.ctl.int_en = 0;
  d.ctl.compl_write = 0;
  REQUIRE(b.put(kDesc, d));
  b.wr64(Bench::ch(kChanChainAddr), kDesc);
  b.wr16(Bench::ch(kChanDmaCount), 0xffff);
  CHECK(b.dev->process() == 0xffff);
  CHECK(b.state() == ChanState::kDone);
  b.wr16(Bench::ch(kChanDmaCount), 0x0001);  // 0xffff + 2, mod 2^16
  CHECK(b.dev->process() == 2);
  CHECK(b.state() == ChanState::kDone);
  CHECK_FALSE(b.dev->has_work());
}

TEST_CASE("ioat: reset in the middle of a chain", "[ioat]") {
  Bench b;
  map_small(b);
  b.wr8(kRegIntrCtrl, kIntrCtrlMsixVectorCtl);
  b.wr16(Bench::ch(kChanCtrl), kChanCtrlIntRearm);
  b.wr64(Bench::ch(kChanCmp), kCmp);
  for (int i = 0; i < 4; ++i) {
    DmaDescriptor d = copy_desc(kSrc, kDst + 0x100 * i, 0x100, kDesc + 64 * (i + 1));
    d.ctl.compl_write = 1;
    d.ctl.int_en = 1;
    REQUIRE(b.put(kDesc + 64 * i, d));
  }
  b.wr64(Bench::ch(kChanChainAddr), kDesc);
  b.wr16(Bench::ch(kChanDmaCount), 4);
  u8 chancmd_during = 0;
  b.mem.on_access = [&](const Access& a) {
    if (a.write && a.iova == kDst + 0x100) {  // the second descriptor's copy
      b.wr8(Bench::ch(kChanCmd), kChanCmdReset);
      chancmd_during = b.rd8(Bench::ch(kChanCmd));
    }
  };
  CHECK(b.dev->process() == 2);
  CHECK(chancmd_during == kChanCmdReset);  // pending while the descriptor was in flight
  CHECK(b.rd8(Bench::ch(kChanCmd)) == 0);
  CHECK(b.chansts() == static_cast<u64>(ChanState::kHalted));
  CHECK(b.chanerr() == 0);
  CHECK_FALSE(b.dev->has_work());
  // The first descriptor completed (one completion write, one interrupt); the second, reset in
  // flight, reported nothing; the third was never fetched.
  CHECK(b.mem.count(kCmp, 8, true) == 1);
  CHECK(b.irq.vectors() == std::vector<u32>{0});
  CHECK(b.mem.count(kDesc + 128, 64, false) == 0);
  // The channel works again after the reset (which cleared CHANCMP), from a new chain.
  b.mem.on_access = nullptr;
  b.wr64(Bench::ch(kChanCmp), kCmp);
  b.wr64(Bench::ch(kChanChainAddr), kDesc + 128);
  b.wr16(Bench::ch(kChanDmaCount), 2);
  CHECK(b.dev->process() == 2);
  CHECK(b.state() == ChanState::kDone);
}

TEST_CASE("ioat: device reset waits for the descriptor in flight", "[ioat]") {
  Bench b;
  map_small(b);
  REQUIRE(b.put(kDesc, copy_desc(kSrc, kDst, 0x100, kDesc)));
  b.wr64(Bench::ch(kChanChainAddr), kDesc);
  b.wr16(Bench::ch(kChanDmaCount), 5);
  std::atomic<bool> in_dma{false};
  std::atomic<bool> release{false};
  b.mem.on_access = [&](const Access& a) {
    if (!a.write || a.iova != kDst) return;
    in_dma = true;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!release && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  };
  std::thread worker([&] { b.dev->process(); });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!in_dma && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  REQUIRE(in_dma.load());
  std::atomic<bool> reset_done{false};
  std::thread resetter([&] {
    b.dev->reset();
    reset_done = true;
  });
  std::this_thread::sleep_for(20ms);
  CHECK_FALSE(reset_done.load());  // still waiting for the copy
  release = true;
  resetter.join();
  worker.join();
  CHECK(reset_done.load());
  CHECK(b.chansts() == static_cast<u64>(ChanState::kHalted));
  CHECK(b.rd16(Bench::ch(kChanDmaCount)) == 0);
  CHECK_FALSE(b.dev->has_work());
}

TEST_CASE("ioat: a worker sleeps while idle and runs what a doorbell queues", "[ioat]") {
  Bench b;
  b.mem.map(kDesc, 0x1000);
  u8* src = b.mem.map(kSrc, 0x1000);
  u8* dst = b.mem.map(kDst, 0x1000);
  fill(src, 0x1000, 9);
  CHECK_FALSE(b.dev->wait_for_work(5ms));  // nothing queued: times out

  std::atomic<bool> stop{false};
  std::atomic<int> wakeups{0};
  std::thread worker([&] {
    while (!stop) {
      if (b.dev->wait_for_work(5s)) b.dev->process(64);
      ++wakeups;
    }
  });
  selftest_init(b);
  selftest_start(b, kSrc, kDst, 0x1000, 1, false);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (b.state() != ChanState::kDone && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  CHECK(b.state() == ChanState::kDone);
  CHECK(std::memcmp(src, dst, 0x1000) == 0);
  stop = true;
  b.dev->wake();
  worker.join();
  CHECK(wakeups.load() >= 1);
}

// While the last descriptor's completion write is in flight the channel already shows DONE; a
// driver that sees it may ring again or start a new chain at once.
TEST_CASE("ioat: a doorbell during the last completion write is not lost", "[ioat]") {
  Bench b;
  b.mem.map(kDesc, 0x1000);
  b.mem.map(kCmp, 64);
  b.wr64(Bench::ch(kChanCmp), kCmp);
  REQUIRE(b.put(kDesc, null_desc(kDesc + 64)));
  REQUIRE(b.put(kDesc + 64, null_desc(kDesc + 128)));
  REQUIRE(b.put(kDesc + 128, null_desc(kDesc)));
  b.wr64(Bench::ch(kChanChainAddr), kDesc);
  bool once = true;
  ChanState seen = ChanState::kActive;

  SECTION("ringing again") {
    b.mem.on_access = [&](const Access& a) {
      if (!a.write || !once) return;
      once = false;
      seen = b.state();
      b.wr16(Bench::ch(kChanDmaCount), 2);
    };
    b.wr16(Bench::ch(kChanDmaCount), 1);
    CHECK(b.dev->process() == 2);
    CHECK(seen == ChanState::kDone);
    CHECK(b.chansts() == ((kDesc + 64) | static_cast<u64>(ChanState::kDone)));
  }
  SECTION("starting a new chain") {
    b.mem.on_access = [&](const Access& a) {
      if (!a.write || !once) return;
      once = false;
      seen = b.state();
      b.wr64(Bench::ch(kChanChainAddr), kDesc + 128);
      b.wr16(Bench::ch(kChanDmaCount), 1);
    };
    b.wr16(Bench::ch(kChanDmaCount), 1);
    CHECK(b.dev->process() == 2);
    CHECK(seen == ChanState::kDone);
    CHECK(b.chansts() == ((kDesc + 128) | static_cast<u64>(ChanState::kDone)));
  }
}
