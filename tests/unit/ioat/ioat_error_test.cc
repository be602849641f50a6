// I/OAT error paths: each bad descriptor or fault sets its CHANERR bit, halts the channel with
// the last good descriptor in CHANSTS, and nothing more runs until a reset.
#include <catch2/catch.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>

#include "tests/unit/ioat/fake_machine.h"

using namespace vfio_emu;
using namespace vfio_emu::devices::ioat;
using namespace vfio_emu::devices::ioat::testing;

namespace {

constexpr u64 kDesc = 0x10000;
constexpr u64 kSrc = 0x20000;
constexpr u64 kDst = 0x40000;
constexpr u64 kCmp = 0x60000;
constexpr u64 kUnmapped = 0x7770000;

struct ErrorBench : Bench {
  explicit ErrorBench(IoatConfig cfg = {}) : Bench(std::move(cfg)) {
    mem.map(kDesc, 0x1000);
    src = mem.map(kSrc, 0x2000);
    dst = mem.map(kDst, 0x2000);
    mem.map(kCmp, 64);
    for (int i = 0; i < 0x2000; ++i) src[i] = static_cast<u8>(i);
    wr8(kRegIntrCtrl, kIntrCtrlMsixVectorCtl);
    wr16(ch(kChanCtrl), kChanCtrlIntRearm | kChanCtrlAnyErrAbortEn);
    wr64(ch(kChanCmp), kCmp);
  }
  // A good copy at slot 0, then `bad` at slot 1 and a good one at slot 2; rings 3.
  void run_with(const DmaDescriptor& bad) {
    REQUIRE(put(kDesc, copy_desc(kSrc, kDst, 0x100, kDesc + 64)));
    REQUIRE(put(kDesc + 64, bad));
    REQUIRE(put(kDesc + 128, copy_desc(kSrc, kDst + 0x1000, 0x100, kDesc + 192)));
    wr64(ch(kChanChainAddr), kDesc);
    wr16(ch(kChanDmaCount), 3);
    ran = dev->process();
  }
  // The channel is halted after the good first descriptor, with `bits` in CHANERR, and stays so.
  void check_halted(u32 bits, u64 last_good = kDesc) {
    CHECK(chanerr() == bits);
    CHECK(chansts() == (last_good | static_cast<u64>(ChanState::kHalted)));
    CHECK(mem.count(kDst + 0x1000, 0x100, true) == 0);  // the third descriptor never ran
    CHECK_FALSE(dev->has_work());
    // A doorbell does not restart a channel halted by an error, even with CHANERR cleared.
    wr32(ch(kChanErr), chanerr());
    wr16(ch(kChanDmaCount), 7);
    CHECK(dev->process() == 0);
    CHECK(state() == ChanState::kHalted);
    // A reset does.
    channel_reset();
    CHECK(state() == ChanState::kHalted);
    CHECK(chanerr() == 0);
    REQUIRE(put(kDesc, copy_desc(kSrc, kDst, 0x10, kDesc)));
    wr64(ch(kChanChainAddr), kDesc);
    wr16(ch(kChanDmaCount), 1);
    CHECK(dev->process() == 1);
    CHECK(state() == ChanState::kDone);
  }

  u8* src = nullptr;
  u8* dst = nullptr;
  u32 ran = 0;
};

}  // namespace

TEST_CASE("ioat error: a descriptor that cannot be read", "[ioat]") {
  ErrorBench b;
  SECTION("CHAINADDR unmapped") {
    b.wr64(Bench::ch(kChanChainAddr), kUnmapped);
    b.wr16(Bench::ch(kChanDmaCount), 1);
    CHECK(b.dev->process() == 1);
    CHECK(b.chanerr() == kChanErrNextAddr);
    CHECK(b.chansts() == static_cast<u64>(ChanState::kHalted));
  }
  SECTION("a `next` that leads nowhere") {
    DmaDescriptor d = copy_desc(kSrc, kDst, 0x100, kUnmapped);
    REQUIRE(b.put(kDesc, d));
    b.wr64(Bench::ch(kChanChainAddr), kDesc);
    b.wr16(Bench::ch(kChanDmaCount), 2);
    CHECK(b.dev->process() == 2);
    b.check_halted(kChanErrNextAddr);
  }
  SECTION("the device has no domain (ENXIO)") {
    REQUIRE(b.put(kDesc, copy_desc(kSrc, kDst, 0x100, kDesc)));
    b.wr64(Bench::ch(kChanChainAddr), kDesc);
    b.mem.fail_all(ENXIO);
    b.wr16(Bench::ch(kChanDmaCount), 1);
    CHECK(b.dev->process() == 1);
    CHECK(b.chanerr() == kChanErrNextAddr);
    CHECK(b.state() == ChanState::kHalted);
  }
}

TEST_CASE("ioat error: misaligned descriptor addresses", "[ioat]") {
  ErrorBench b;
  SECTION("CHAINADDR") {
    b.wr64(Bench::ch(kChanChainAddr), kDesc + 8);
    b.wr16(Bench::ch(kChanDmaCount), 1);
    CHECK(b.dev->process() == 1);
    CHECK(b.chanerr() == kChanErrChainAddrValue);
    CHECK(b.mem.accesses().empty());  // not even fetched
  }
  SECTION("next") {
    b.run_with(copy_desc(kSrc, kDst, 0x100, kDesc + 100));  // slot 1 links to a misaligned one
    CHECK(b.ran == 3);
    b.check_halted(kChanErrNextDescAlign, kDesc + 64);
  }
}

TEST_CASE("ioat error: source and destination faults", "[ioat]") {
  ErrorBench b;
  SECTION("source unmapped") {
    b.run_with(copy_desc(kUnmapped, kDst + 0x800, 0x100, kDesc + 128));
    CHECK(b.ran == 2);
    CHECK(b.mem.count(kDst + 0x800, 0x100, true) == 0);
    b.check_halted(kChanErrSrcAddr);
  }
  SECTION("source not readable") {
    b.mem.map(0x900000, 0x1000, /*readable=*/false, /*writable=*/true);
    b.run_with(copy_desc(0x900000, kDst + 0x800, 0x100, kDesc + 128));
    b.check_halted(kChanErrSrcAddr);
  }
  SECTION("destination read-only") {
    u8* ro = b.mem.map(0x900000, 0x1000, /*readable=*/true, /*writable=*/false);
    b.run_with(copy_desc(kSrc, 0x900000, 0x100, kDesc + 128));
    CHECK(ro[0x10] == 0);
    b.check_halted(kChanErrDestAddr);
  }
  SECTION("a range that runs off the end of a mapping") {
    b.run_with(copy_desc(kSrc + 0x1f00, kDst, 0x200, kDesc + 128));
    b.check_halted(kChanErrSrcAddr);
  }
  SECTION("a range that wraps past 2^64") {
    b.run_with(copy_desc(kSrc, ~u64{0} - 0x10, 0x100, kDesc + 128));
    b.check_halted(kChanErrDestAddr);
  }
}

TEST_CASE("ioat error: bad operation and bad sizes", "[ioat]") {
  IoatConfig cfg;
  cfg.xfercap_log = 12;
  ErrorBench b(cfg);
  SECTION("unsupported op (XOR)") {
    DmaDescriptor d = copy_desc(kSrc, kDst + 0x800, 0x100, kDesc + 128);
    d.ctl.op = static_cast<u32>(Op::kXor);
    b.run_with(d);
    CHECK(b.mem.count(kDst + 0x800, 0x100, true) == 0);
    b.check_halted(kChanErrControl);
  }
  SECTION("size 0") {
    b.run_with(copy_desc(kSrc, kDst + 0x800, 0, kDesc + 128));
    b.check_halted(kChanErrLength);
  }
  SECTION("size 0 on a null descriptor too") {
    DmaDescriptor d = null_desc(kDesc + 128);
    d.size = 0;
    b.run_with(d);
    b.check_halted(kChanErrLength);
  }
  SECTION("one byte more than XFERCAP allows; no data moves") {
    b.mem.clear_log();
    b.run_with(copy_desc(kSrc, kDst, 4097, kDesc + 128));
    CHECK(b.mem.count(kSrc, 0x2000, false) == 1);  // the first descriptor's read only
    b.check_halted(kChanErrLength);
  }
  SECTION("the largest size: 4 GiB - 1") {
    b.run_with(copy_desc(kSrc, kDst, 0xffffffff, kDesc + 128));
    b.check_halted(kChanErrLength);
  }
  SECTION("exactly XFERCAP is fine") {
    b.mem.map(0x100000, 0x1000);
    b.run_with(copy_desc(kSrc, 0x100000, 4096, kDesc + 128));
    CHECK(b.chanerr() == 0);
    CHECK(b.state() == ChanState::kDone);
  }
}

TEST_CASE("ioat error: completion address faults", "[ioat]") {
  ErrorBench b;
  DmaDescriptor d = copy_desc(kSrc, kDst + 0x800, 0x100, kDesc + 128);
  d.ctl.compl_write = 1;
  SECTION("unmapped") {
    b.wr64(Bench::ch(kChanCmp), kUnmapped);
    b.run_with(d);
    // The copy itself happened; the descriptor is the last one completed.
    CHECK(std::memcmp(b.src, b.dst + 0x800, 0x100) == 0);
    b.check_halted(kChanErrCompletionAddr, kDesc + 64);
  }
  SECTION("read-only") {
    b.mem.map(0x900000, 0x1000, true, false);
    b.wr64(Bench::ch(kChanCmp), 0x900000);
    b.run_with(d);
    b.check_halted(kChanErrCompletionAddr, kDesc + 64);
  }
  SECTION("misaligned") {
    b.wr64(Bench::ch(kChanCmp), kCmp + 4);
    b.run_with(d);
    CHECK(b.mem.count(kCmp, 64, true) == 0);
    b.check_halted(kChanErrCompletionAddr, kDesc + 64);
  }
}

TEST_CASE("ioat error: ERR_COMPLETION_EN and ERR_INT_EN report the halt", "[ioat]") {
  ErrorBench b;
  DmaDescriptor bad = copy_desc(kUnmapped, kDst, 0x100, kDesc + 128);
  SECTION("neither: only the registers say so") {
    b.run_with(bad);
    CHECK(b.mem.count(kCmp, 8, true) == 0);
    CHECK(b.irq.vectors().empty());
  }
  SECTION("Linux's IOAT_CHANCTRL_RUN: a completion write with HALTED, and an interrupt") {
    b.wr16(Bench::ch(kChanCtrl), kChanCtrlIntRearm | kChanCtrlErrIntEn |
                                     kChanCtrlErrCompletionEn | kChanCtrlAnyErrAbortEn);
    b.run_with(bad);
    CHECK(b.completion(kCmp) == (kDesc | static_cast<u64>(ChanState::kHalted)));
    CHECK(b.irq.vectors() == std::vector<u32>{0});
  }
  SECTION("a masked error raises no interrupt") {
    b.wr16(Bench::ch(kChanCtrl), kChanCtrlIntRearm | kChanCtrlErrIntEn);
    b.wr32(Bench::ch(kChanErrMask), kChanErrSrcAddr);
    b.run_with(bad);
    CHECK(b.chanerr() == kChanErrSrcAddr);
    CHECK(b.irq.vectors().empty());
  }
}

TEST_CASE("ioat error: a doorbell past the ring", "[ioat]") {
  ErrorBench b;
  // A ring of two: the second links to memory the driver never wrote.
  REQUIRE(b.put(kDesc, copy_desc(kSrc, kDst, 0x100, kDesc + 64)));
  SECTION("into zeroed memory: a size-0 descriptor") {
    REQUIRE(b.put(kDesc + 64, copy_desc(kSrc, kDst, 0x100, kDesc + 128)));
    b.wr64(Bench::ch(kChanChainAddr), kDesc);
    b.wr16(Bench::ch(kChanDmaCount), 6);
    CHECK(b.dev->process() == 3);
    CHECK(b.chanerr() == kChanErrLength);
    CHECK(b.chansts() == ((kDesc + 64) | static_cast<u64>(ChanState::kHalted)));
  }
  SECTION("into unmapped memory") {
    REQUIRE(b.put(kDesc + 64, copy_desc(kSrc, kDst, 0x100, kUnmapped)));
    b.wr64(Bench::ch(kChanChainAddr), kDesc);
    b.wr16(Bench::ch(kChanDmaCount), 6);
    CHECK(b.dev->process() == 3);
    CHECK(b.chanerr() == kChanErrNextAddr);
    CHECK(b.chansts() == ((kDesc + 64) | static_cast<u64>(ChanState::kHalted)));
  }
  CHECK_FALSE(b.dev->has_work());
}

TEST_CASE("ioat error: a halt whose error completion write faults still interrupts", "[ioat]") {
  ErrorBench b;
  b.wr16(Bench::ch(kChanCtrl), kChanCtrlIntRearm | kChanCtrlErrIntEn | kChanCtrlErrCompletionEn);
  b.wr64(Bench::ch(kChanCmp), kUnmapped);
  b.run_with(copy_desc(kUnmapped, kDst, 0x100, kDesc + 128));
  CHECK(b.chanerr() == (kChanErrSrcAddr | kChanErrCompletionAddr));
  CHECK(b.irq.vectors() == std::vector<u32>{0});
}

TEST_CASE("ioat error: a failed completion write replaces the descriptor's interrupt", "[ioat]") {
  ErrorBench b;
  DmaDescriptor d = copy_desc(kSrc, kDst + 0x800, 0x100, kDesc + 128);
  d.ctl.compl_write = 1;
  d.ctl.int_en = 1;
  b.wr64(Bench::ch(kChanCmp), kUnmapped);
  SECTION("without ERR_INT_EN: no interrupt") {
    b.run_with(d);
    CHECK(b.chanerr() == kChanErrCompletionAddr);
    CHECK(b.irq.vectors().empty());
  }
  SECTION("with ERR_INT_EN: one") {
    b.wr16(Bench::ch(kChanCtrl), kChanCtrlIntRearm | kChanCtrlErrIntEn);
    b.run_with(d);
    CHECK(b.irq.vectors() == std::vector<u32>{0});
  }
}

TEST_CASE("ioat: halt lines are rate-limited per channel", "[ioat][errors]") {
  // A program can halt a channel in a loop (a bad descriptor, a reset, again): the log gets a
  // burst, then a steady rate, and the suppressed count, not a line per halt.
  std::ostringstream text;
  IoatConfig cfg;
  cfg.log = std::make_shared<spdlog::logger>(
      "ioat-test", std::make_shared<spdlog::sinks::ostream_sink_mt>(text));
  ErrorBench b(std::move(cfg));
  for (int i = 0; i < 50; ++i) {
    DmaDescriptor bad = copy_desc(kSrc, kUnmapped, 0x100, kDesc + 128);
    b.run_with(bad);
    b.channel_reset();
  }
  const std::string out = text.str();
  const auto lines = std::count(out.begin(), out.end(), '\n');
  CHECK(lines >= 10);  // the burst
  // Fewer lines than halts, however slowly the loop ran (2 lines per second after the burst).
  CHECK(lines < 50);
}
