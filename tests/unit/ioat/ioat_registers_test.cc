// The I/OAT register file: reset values, what each register the drivers touch keeps, read-only
// registers, access sizes and offsets.
#include <catch2/catch.hpp>

#include "tests/unit/ioat/fake_machine.h"

using namespace vfio_emu;
using namespace vfio_emu::devices::ioat;
using namespace vfio_emu::devices::ioat::testing;

TEST_CASE("ioat: the configuration is validated", "[ioat]") {
  FakeMemory mem;
  FakeInterrupts irq;
  IoatConfig cfg;
  cfg.channels = 0;
  CHECK(IoatDevice::create(cfg, mem, irq).error() == EINVAL);
  cfg.channels = kMaxChannels + 1;
  CHECK(IoatDevice::create(cfg, mem, irq).error() == EINVAL);
  cfg.channels = 1;
  cfg.xfercap_log = 11;
  CHECK(IoatDevice::create(cfg, mem, irq).error() == EINVAL);
  cfg.xfercap_log = 25;
  CHECK(IoatDevice::create(cfg, mem, irq).error() == EINVAL);
  cfg.xfercap_log = 20;
  cfg.version = 0x34;  // neither driver's ioat path for SKX knows 3.4
  CHECK(IoatDevice::create(cfg, mem, irq).error() == EINVAL);
  cfg.version = kCbVer32;
  CHECK(IoatDevice::create(cfg, mem, irq).ok());
}

TEST_CASE("ioat: device registers read their reset values", "[ioat]") {
  IoatConfig cfg;
  cfg.channels = 2;
  cfg.xfercap_log = 16;
  Bench b(cfg);
  REQUIRE(b.dev);
  CHECK(b.rd8(kRegChanCnt) == 2);
  CHECK(b.rd8(kRegXferCap) == 16);
  CHECK(b.rd8(kRegGenCtrl) == 0);
  CHECK(b.rd8(kRegIntrCtrl) == 0);
  CHECK(b.rd32(kRegAttnStatus) == 0);
  CHECK(b.rd8(kRegCbVer) == kCbVer33);
  CHECK(b.rd16(kRegPerPortOffset) == 0);
  CHECK(b.rd16(kRegIntrDelay) == 0);
  CHECK(b.rd16(kRegDeviceStatus) == 0);
  CHECK(b.rd32(kRegDmaCap) == 0);
}

TEST_CASE("ioat: channel registers read their reset values", "[ioat]") {
  IoatConfig cfg;
  cfg.channels = 2;
  Bench b(cfg);
  for (u32 n = 0; n < 2; ++n) {
    CAPTURE(n);
    CHECK(b.rd16(Bench::ch(kChanCtrl, n)) == 0);
    CHECK(b.rd16(Bench::ch(kChanDmaComp, n)) == kDmaCompV2);
    CHECK(b.rd8(Bench::ch(kChanCmd, n)) == 0);
    CHECK(b.rd16(Bench::ch(kChanDmaCount, n)) == 0);
    // The selftests assert HALTED after their reset; a fresh channel is the same.
    CHECK(b.chansts(n) == static_cast<u64>(ChanState::kHalted));
    CHECK(b.rd64(Bench::ch(kChanChainAddr, n)) == 0);
    CHECK(b.rd64(Bench::ch(kChanCmp, n)) == 0);
    CHECK(b.rd64(Bench::ch(kChanCdar, n)) == 0);
    CHECK(b.chanerr(n) == 0);
    CHECK(b.rd32(Bench::ch(kChanErrMask, n)) == 0);
    CHECK(b.rd32(Bench::ch(kChanDcaCtrl, n)) == 0);
  }
  // No third channel: its window reads 0 and ignores writes.
  b.wr64(Bench::ch(kChanChainAddr, 2), 0x1000);
  CHECK(b.rd64(Bench::ch(kChanChainAddr, 2)) == 0);
  CHECK(b.rd64(Bench::ch(kChanSts, 2)) == 0);
}

TEST_CASE("ioat: read-only registers ignore writes", "[ioat]") {
  Bench b;
  b.wr8(kRegChanCnt, 7);
  b.wr8(kRegXferCap, 3);
  b.wr8(kRegCbVer, 0x12);
  b.wr32(kRegAttnStatus, ~0u);
  b.wr32(kRegDmaCap, ~0u);
  b.wr16(kRegDeviceStatus, 0xffff);
  CHECK(b.rd8(kRegChanCnt) == 1);
  CHECK(b.rd8(kRegXferCap) == 20);
  CHECK(b.rd8(kRegCbVer) == kCbVer33);
  CHECK(b.rd32(kRegAttnStatus) == 0);
  CHECK(b.rd32(kRegDmaCap) == 0);
  CHECK(b.rd16(kRegDeviceStatus) == 0);
  b.wr64(Bench::ch(kChanSts), 0x1001);
  b.wr64(Bench::ch(kChanCdar), 0x2000);
  b.wr16(Bench::ch(kChanDmaComp), 0xffff);
  CHECK(b.chansts() == static_cast<u64>(ChanState::kHalted));
  CHECK(b.rd64(Bench::ch(kChanCdar)) == 0);
  CHECK(b.rd16(Bench::ch(kChanDmaComp)) == kDmaCompV2);
}

TEST_CASE("ioat: writable registers keep their defined bits", "[ioat]") {
  Bench b;
  b.wr8(kRegGenCtrl, 0xff);
  CHECK(b.rd8(kRegGenCtrl) == 0x01);
  // INT_STATUS and INT are status bits, not stored.
  b.wr8(kRegIntrCtrl, 0xff);
  CHECK(b.rd8(kRegIntrCtrl) == (kIntrCtrlMasterIntEn | kIntrCtrlMsixVectorCtl));
  b.wr16(kRegIntrDelay, 0xffff);
  CHECK(b.rd16(kRegIntrDelay) == kIntrDelayMask);  // no coalescing support bit

  b.wr16(Bench::ch(kChanCtrl), 0xffff);
  CHECK(b.rd16(Bench::ch(kChanCtrl)) == kChanCtrlWritable);
  b.wr16(Bench::ch(kChanCtrl), kChanCtrlIntRearm | kChanCtrlAnyErrAbortEn);  // the selftests'
  CHECK(b.rd16(Bench::ch(kChanCtrl)) == (kChanCtrlIntRearm | kChanCtrlAnyErrAbortEn));

  b.wr64(Bench::ch(kChanChainAddr), 0x1234'5678'9abc'de40);
  CHECK(b.rd64(Bench::ch(kChanChainAddr)) == 0x1234'5678'9abc'de40);
  // Linux writes CHANCMP as two 32-bit halves (ioat_alloc_chan_resources).
  b.wr32(Bench::ch(kChanCmp), 0x89ab'cdc0);
  b.wr32(Bench::ch(kChanCmp) + 4, 0x0000'0001);
  CHECK(b.rd64(Bench::ch(kChanCmp)) == 0x1'89ab'cdc0);
  CHECK(b.rd32(Bench::ch(kChanCmp) + 4) == 1);
  b.wr32(Bench::ch(kChanErrMask), 0x30000);  // ioat_intr_quirk's XOR P/Q mask
  CHECK(b.rd32(Bench::ch(kChanErrMask)) == 0x30000);
  b.wr32(Bench::ch(kChanDcaCtrl), ~0u);  // IOAT_DMA_DCA_ANY_CPU
  CHECK(b.rd32(Bench::ch(kChanDcaCtrl)) == kDcaCtrlWritable);
  b.wr16(Bench::ch(kChanDmaCount), 0);
  CHECK(b.rd16(Bench::ch(kChanDmaCount)) == 0);
}

TEST_CASE("ioat: accesses of any size compose the registers they cover", "[ioat]") {
  Bench b;
  b.wr8(kRegIntrCtrl, kIntrCtrlMasterIntEn);
  // One 8-byte read of 0x00: CHANCNT, XFERCAP, GENCTRL, INTRCTRL, ATTNSTATUS.
  CHECK(b.rd64(0x00) == (u64{1} | u64{20} << 8 | u64{kIntrCtrlMasterIntEn} << 24));
  CHECK(b.rd16(0x00) == (1 | 20 << 8));
  CHECK(b.rd8(0x01) == 20);
  // A byte of CHAINADDR.
  b.wr64(Bench::ch(kChanChainAddr), 0x1122'3344'5566'7780);
  CHECK(b.rd8(Bench::ch(kChanChainAddr) + 3) == 0x55);
  b.wr8(Bench::ch(kChanChainAddr) + 7, 0xaa);
  CHECK(b.rd64(Bench::ch(kChanChainAddr)) == 0xaa22'3344'5566'7780);
  // Bytes in no register (gaps and the rest of the BAR) read 0.
  CHECK(b.rd8(0x09) == 0);
  CHECK(b.rd32(0x14) == 0);
  CHECK(b.rd64(Bench::ch(0x38)) == 0);
  CHECK(b.rd64(0x3ff8) == 0);
}

TEST_CASE("ioat: accesses of a bad size or past the BAR are ignored", "[ioat]") {
  Bench b;
  CHECK(b.dev->mmio_read(kRegChanCnt, 3) == 0);
  CHECK(b.dev->mmio_read(kRegChanCnt, 16) == 0);
  CHECK(b.dev->mmio_read(kBar0Size, 1) == 0);
  CHECK(b.dev->mmio_read(kBar0Size - 4, 8) == 0);
  CHECK(b.dev->mmio_read(kU64Max, 8) == 0);
  b.dev->mmio_write(Bench::ch(kChanChainAddr), 0x1000, 3);
  b.dev->mmio_write(kU64Max - 1, 0x1000, 8);
  CHECK(b.rd64(Bench::ch(kChanChainAddr)) == 0);
}

TEST_CASE("ioat: CHANERR is write-1-to-clear", "[ioat]") {
  Bench b;
  b.mem.map(0x10000, 0x1000);
  b.wr64(Bench::ch(kChanChainAddr), 0x10000);
  REQUIRE(b.put(0x10000, copy_desc(0x10000, 0x10000, 0, 0x10000)));  // size 0: LENGTH_ERR
  b.wr16(Bench::ch(kChanDmaCount), 1);
  b.dev->process();
  REQUIRE(b.chanerr() == kChanErrLength);
  b.wr32(Bench::ch(kChanErr), 0);
  CHECK(b.chanerr() == kChanErrLength);
  b.wr32(Bench::ch(kChanErr), kChanErrSrcAddr);
  CHECK(b.chanerr() == kChanErrLength);
  b.wr32(Bench::ch(kChanErr), kChanErrLength);
  CHECK(b.chanerr() == 0);
}

TEST_CASE("ioat: device reset restores every register", "[ioat]") {
  Bench b;
  b.wr8(kRegIntrCtrl, kIntrCtrlMsixVectorCtl);
  b.wr8(kRegGenCtrl, 1);
  b.wr16(kRegIntrDelay, 5);
  b.wr16(Bench::ch(kChanCtrl), kChanCtrlIntRearm);
  b.wr64(Bench::ch(kChanChainAddr), 0x40);
  b.wr64(Bench::ch(kChanCmp), 0x80);
  b.wr32(Bench::ch(kChanErrMask), 1);
  b.dev->reset();
  CHECK(b.rd8(kRegIntrCtrl) == 0);
  CHECK(b.rd8(kRegGenCtrl) == 0);
  CHECK(b.rd16(kRegIntrDelay) == 0);
  CHECK(b.rd16(Bench::ch(kChanCtrl)) == 0);
  CHECK(b.rd64(Bench::ch(kChanChainAddr)) == 0);
  CHECK(b.rd64(Bench::ch(kChanCmp)) == 0);
  CHECK(b.rd32(Bench::ch(kChanErrMask)) == 0);
  CHECK(b.chansts() == static_cast<u64>(ChanState::kHalted));
}
