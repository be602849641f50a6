// The I/OAT function with its BAR0 mapped (devices/ioat/ioat_function.h + register_mirror.h): a
// driver that only loads and stores to the mapping, as Linux's VFIO selftests' ioat driver and
// SPDK's do, drives the engine; what the engine does shows in the mapping; pread/pwrite and the
// mapping agree.
#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <random>
#include <thread>

#include "devices/ioat/ioat_function.h"
#include "tests/unit/devices/program_mapping.h"
#include "tests/unit/ioat/fake_machine.h"

using namespace vfio_emu;
using namespace vfio_emu::devices;
using namespace vfio_emu::devices::ioat;
using namespace vfio_emu::devices::ioat::testing;
using vfio_emu::devices::testing::ProgramMapping;

namespace {

constexpr u64 kDesc = 0x10000, kSrc = 0x20000, kDst = 0x30000;
constexpr u64 kCopy = 4096;

u64 ch(u64 reg) { return channel_base(0) + reg; }

// Records, with each vector, what the program's mapping showed of CHANSTS at that moment.
class SeeingInterrupts : public InterruptSink {
 public:
  std::function<u64()> look;
  void msix(u32 vector) override {
    std::lock_guard lock(mu_);
    seen.push_back({vector, look ? look() : 0});
  }
  size_t count() {
    std::lock_guard lock(mu_);
    return seen.size();
  }
  std::vector<std::pair<u32, u64>> seen;

 private:
  std::mutex mu_;
};

// Polls `cond` as a driver does (a sleep between looks) for at most 5 s.
bool wait_for(const std::function<bool()>& cond) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return cond();
}

struct MappedIoat {
  MappedIoat() {
    std::array<u64, BarFile::kBars> sizes{};
    sizes[0] = kBar0Size;
    auto f = BarFile::create("ioat-window-test", sizes);
    REQUIRE(f.ok());
    file = f.take();
    fn.connect(&mem, &irq);
    fn.attach_window(0, file->window(0));
    prog = std::make_unique<ProgramMapping>(file->fd(), 0, kBar0Size);
    irq.look = [this] { return prog->load<u64>(ch(kChanSts)); };
  }
  ~MappedIoat() { fn.connect(nullptr, nullptr); }

  u64 state() { return prog->load<u64>(ch(kChanSts)) & kChanStsStateMask; }
  bool reach(ChanState s) { return wait_for([&] { return state() == static_cast<u64>(s); }); }

  // ioat_reset() of the selftests' driver, through the mapping only.
  void reset() {
    prog->store<u32>(ch(kChanErr), prog->load<u32>(ch(kChanErr)));
    prog->store<u8>(ch(kChanCmd), kChanCmdReset);
    REQUIRE(wait_for([&] { return (prog->load<u8>(ch(kChanCmd)) & kChanCmdReset) == 0; }));
    REQUIRE(state() == static_cast<u64>(ChanState::kHalted));
  }
  // __ioat_memcpy_start() + ioat_memcpy_wait(): CHAINADDR, CHANCTRL, DMACOUNT; wait for DONE,
  // then SUSPEND.
  void memcpy_round(u16 count, bool interrupt) {
    DmaDescriptor d{};
    d.size = kCopy;
    d.ctl.int_en = interrupt ? 1 : 0;
    d.src_addr = kSrc;
    d.dst_addr = kDst;
    d.next = kDesc;
    REQUIRE(mem.poke(kDesc, &d, sizeof d));
    prog->store<u64>(ch(kChanChainAddr), kDesc);
    prog->store<u16>(ch(kChanCtrl), kChanCtrlIntRearm | kChanCtrlAnyErrAbortEn);
    prog->store<u16>(ch(kChanDmaCount), count);
    REQUIRE(reach(ChanState::kDone));
    prog->store<u8>(ch(kChanCmd), kChanCmdSuspend);
    REQUIRE(reach(ChanState::kSuspended));
  }

  FakeMemory mem;
  SeeingInterrupts irq;
  std::unique_ptr<BarFile> file;
  IoatFunction fn;
  std::unique_ptr<ProgramMapping> prog;
};

}  // namespace

TEST_CASE("ioat mapped: the identification registers show in the mapping",
          "[ioat][window]") {
  MappedIoat m;
  CHECK(m.fn.bar_mappable(0));
  CHECK(m.prog->load<u8>(kRegCbVer) == kCbVer33);
  CHECK(m.prog->load<u8>(kRegChanCnt) == IoatFunction::kChannels);
  CHECK(m.prog->load<u8>(kRegXferCap) == 20);
  CHECK(m.prog->load<u16>(ch(kChanDmaComp)) == kDmaCompV2);
  CHECK(m.state() == static_cast<u64>(ChanState::kHalted));
  // A store to a read-only register is undone in the mapping.
  m.prog->store<u8>(kRegCbVer, 0x99);
  CHECK(wait_for([&] { return m.prog->load<u8>(kRegCbVer) == kCbVer33; }));
}

TEST_CASE("ioat mapped: the selftests' driver sequence, the same values every round",
          "[ioat][window]") {
  MappedIoat m;
  u8* src = m.mem.map(kSrc, kCopy);
  u8* dst = m.mem.map(kDst, kCopy);
  m.mem.map(kDesc, 4096);
  m.reset();
  m.prog->store<u8>(kRegIntrCtrl, kIntrCtrlMsixVectorCtl);
  const u64 before = m.fn.mapped_writes();
  constexpr int kRounds = 12;
  for (int round = 0; round < kRounds; ++round) {
    for (u64 i = 0; i < kCopy; ++i) src[i] = static_cast<u8>(i * 7 + round);
    std::memset(dst, 0, kCopy);
    // The same CHAINADDR, CHANCTRL and DMACOUNT each round: the suspended channel shows
    // CHAINADDR and DMACOUNT as 0, so the driver's stores are changes.
    // send_msi() rings for one descriptor with int_en; memcpy_start() for several without.
    const bool interrupt = round % 2 == 1;
    m.memcpy_round(interrupt ? 1 : 3, interrupt);
    INFO("round " << round);
    REQUIRE(std::memcmp(src, dst, kCopy) == 0);
  }
  // CHAINADDR, DMACOUNT, SUSPEND every round (CHANCTRL when its INT_REARM was taken).
  CHECK(m.fn.mapped_writes() - before >= 3 * kRounds);
  // One interrupt per round with int_en, and at each the mapping already showed DONE.
  REQUIRE(m.irq.count() == kRounds / 2);
  for (const auto& [vector, chansts] : m.irq.seen) {
    CHECK(vector == 0);
    CHECK((chansts & kChanStsStateMask) == static_cast<u64>(ChanState::kDone));
  }
  // The engine's own registers say what pread says: CHAINADDR is the chain, DMACOUNT the count.
  u64 v = 0;
  m.fn.bar_read(0, ch(kChanChainAddr), reinterpret_cast<u8*>(&v), 8);
  CHECK(v == kDesc);
  m.reset();
}

TEST_CASE("ioat mapped: a cumulative DMACOUNT (SPDK, Linux) without suspending",
          "[ioat][window]") {
  MappedIoat m;
  u8* src = m.mem.map(kSrc, kCopy);
  u8* dst = m.mem.map(kDst, 8 * kCopy);
  m.mem.map(kDesc, 4096);
  m.reset();
  // A ring of 8 descriptors, each copying src to its own slice of dst; the driver appends them
  // one doorbell at a time with a running count, never rewriting CHAINADDR.
  for (u64 i = 0; i < kCopy; ++i) src[i] = static_cast<u8>(i ^ 0x5a);
  for (u64 n = 0; n < 8; ++n) {
    DmaDescriptor d{};
    d.size = kCopy;
    d.src_addr = kSrc;
    d.dst_addr = kDst + n * kCopy;
    d.next = kDesc + ((n + 1) % 8) * sizeof(DmaDescriptor);
    REQUIRE(m.mem.poke(kDesc + n * sizeof(DmaDescriptor), &d, sizeof d));
  }
  m.prog->store<u64>(ch(kChanChainAddr), kDesc);
  for (u16 count = 1; count <= 8; ++count) {
    m.prog->store<u16>(ch(kChanDmaCount), count);
    REQUIRE(wait_for([&] {
      return m.state() == static_cast<u64>(ChanState::kDone) &&
             std::memcmp(src, dst + (count - 1) * kCopy, kCopy) == 0;
    }));
  }
  for (u64 n = 0; n < 8; ++n) CHECK(std::memcmp(src, dst + n * kCopy, kCopy) == 0);
  // Each descriptor ran once.
  CHECK(m.mem.count(kSrc, kCopy, false) == 8);
}

TEST_CASE("ioat mapped: a driver spinning on CHANCMD until a reset is taken then reads HALTED",
          "[ioat][window]") {
  // ioat_reset() of the selftests' driver and Linux's ioat_reset_hw(): write RESET to CHANCMD,
  // poll CHANCMD until the RESET bit clears, then read CHANSTS (the selftests assert HALTED). A
  // driver that polls without sleeping reads CHANSTS nanoseconds after it sees CHANCMD change:
  // the mapping must already show the state the reset left. Each round starts from a suspended
  // channel, so a stale CHANSTS would not read HALTED. Bounded by count and time.
  MappedIoat m;
  u8* src = m.mem.map(kSrc, kCopy);
  m.mem.map(kDst, kCopy);
  m.mem.map(kDesc, 4096);
  std::memset(src, 0x5a, kCopy);
  m.reset();
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int rounds = 0, stale = 0;
  for (; rounds < 30 && std::chrono::steady_clock::now() < end; ++rounds) {
    m.memcpy_round(1, false);  // ends SUSPENDED
    m.prog->store<u8>(ch(kChanCmd), kChanCmdReset);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while ((m.prog->load<u8>(ch(kChanCmd)) & kChanCmdReset) != 0 &&
           std::chrono::steady_clock::now() < give_up) {
    }
    REQUIRE((m.prog->load<u8>(ch(kChanCmd)) & kChanCmdReset) == 0);
    if (m.state() != static_cast<u64>(ChanState::kHalted)) ++stale;
    REQUIRE(m.reach(ChanState::kHalted));
  }
  INFO(rounds << " rounds");
  CHECK(stale == 0);
}

TEST_CASE("ioat mapped: pread/pwrite and the mapping agree", "[ioat][window]") {
  MappedIoat m;
  // A store through the mapping is what the next pread of the register returns.
  m.prog->store<u64>(ch(kChanCmp), 0x4000);
  u64 v = 0;
  m.fn.bar_read(0, ch(kChanCmp), reinterpret_cast<u8*>(&v), 8);
  CHECK(v == 0x4000);
  // A pwrite shows in the mapping at once.
  const u64 w = 0x5000;
  m.fn.bar_write(0, ch(kChanCmp), reinterpret_cast<const u8*>(&w), 8);
  CHECK(m.prog->load<u64>(ch(kChanCmp)) == 0x5000);
  // A function reset shows its reset values.
  m.fn.reset();
  CHECK(m.prog->load<u64>(ch(kChanCmp)) == 0);
  CHECK(m.state() == static_cast<u64>(ChanState::kHalted));
}

TEST_CASE("ioat mapped: random stores anywhere in BAR0 (bounded by time and count)",
          "[ioat][window][random]") {
  MappedIoat m;
  m.mem.map(kDesc, 4096);
  std::mt19937_64 rng(Catch::rngSeed());
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  int n = 0;
  for (; n < 20000 && std::chrono::steady_clock::now() < end; ++n) {
    const u64 off = rng() % (kBar0Size / 8) * 8;
    m.prog->store<u64>(off, rng() % 4 == 0 ? kDesc : rng());
    if (n % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  // Whatever happened, the device still resets and reports through the mapping.
  m.reset();
  CHECK(m.prog->load<u8>(kRegCbVer) == kCbVer33);
  INFO(n << " stores");
}

TEST_CASE("ioat mapped: a reset, then at once the same registers as before it",
          "[ioat][window]") {
  // The driver spins on CHANCMD without a sleep and, the moment RESET reads clear, stores the
  // CHANCMP and CHAINADDR it stored before the reset. The reset zeroed them in the engine; the
  // window must have shown those zeroes before CHANCMD cleared, or the publish still under way
  // overwrites the driver's stores of the old values (found by bench/ioat_bench.cc).
  MappedIoat m;
  u8* src = m.mem.map(kSrc, kCopy);
  u8* dst = m.mem.map(kDst, kCopy);
  m.mem.map(kDesc, 4096);
  m.mem.map(0x40000, 4096);
  auto completion = [&] {
    u64 v = 0;
    m.mem.peek(0x40000, &v, 8);
    return v;
  };
  for (u64 i = 0; i < kCopy; ++i) src[i] = static_cast<u8>(i * 3);
  DmaDescriptor d{};
  d.size = kCopy;
  d.ctl.compl_write = 1;
  d.src_addr = kSrc;
  d.dst_addr = kDst;
  d.next = kDesc;
  REQUIRE(m.mem.poke(kDesc, &d, sizeof d));
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  int rounds = 0;
  for (; rounds < 40 && std::chrono::steady_clock::now() < end; ++rounds) {
    std::memset(dst, 0, kCopy);
    const u64 zero = 0;
    REQUIRE(m.mem.poke(0x40000, &zero, 8));
    m.prog->store<u8>(ch(kChanCmd), kChanCmdReset);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (m.prog->load<u8>(ch(kChanCmd)) & kChanCmdReset)
      if (std::chrono::steady_clock::now() > give_up) FAIL("the reset does not finish");
    m.prog->store<u64>(ch(kChanCmp), 0x40000);
    m.prog->store<u64>(ch(kChanChainAddr), kDesc);
    m.prog->store<u16>(ch(kChanDmaCount), 1);
    INFO("round " << rounds);
    REQUIRE(wait_for([&] { return completion() != 0; }));
    CHECK((completion() & kChanStsAddrMask) == kDesc);
    REQUIRE(std::memcmp(src, dst, kCopy) == 0);
  }
  CHECK(rounds > 0);
}

TEST_CASE("ioat mapped: an error-free halt shows HALTED until the program moves on",
          "[ioat][window]") {
  MappedIoat m;
  m.mem.map(kDesc, 4096);
  m.reset();  // asserts HALTED right after RESET reads clear
  // Another store (the selftests' INTRCTRL), seen by the mirror: the halt has been shown.
  m.prog->store<u8>(kRegIntrCtrl, kIntrCtrlMsixVectorCtl);
  CHECK(m.reach(ChanState::kSuspended));
  // The engine itself is halted all along (pread returns the truth).
  u64 v = 0;
  m.fn.bar_read(0, ch(kChanSts), reinterpret_cast<u8*>(&v), 8);
  CHECK((v & kChanStsStateMask) == static_cast<u64>(ChanState::kHalted));
  // A reset shows HALTED again; a system call on the device (settle) moves on as a store does.
  m.reset();
  m.fn.settle();
  CHECK(m.state() == static_cast<u64>(ChanState::kSuspended));
  // So a driver that rings and polls at once after init never reads HALTED before DONE.
  DmaDescriptor d{};
  d.size = 64;
  d.ctl.null = 1;
  d.next = kDesc;
  REQUIRE(m.mem.poke(kDesc, &d, sizeof d));
  m.prog->store<u64>(ch(kChanChainAddr), kDesc);
  m.prog->store<u16>(ch(kChanDmaCount), 1);
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  u64 s = 0;
  while ((s = m.state()) != static_cast<u64>(ChanState::kDone) &&
         std::chrono::steady_clock::now() < end)
    if (s == static_cast<u64>(ChanState::kHalted)) break;
  CHECK(s == static_cast<u64>(ChanState::kDone));
  // A halt by an error stays HALTED whatever the program stores.
  d.ctl.null = 0;
  d.src_addr = 0xdead000;  // not mapped
  REQUIRE(m.mem.poke(kDesc, &d, sizeof d));
  m.prog->store<u8>(ch(kChanCmd), kChanCmdSuspend);
  REQUIRE(m.reach(ChanState::kSuspended));
  m.prog->store<u64>(ch(kChanChainAddr), kDesc);
  m.prog->store<u16>(ch(kChanDmaCount), 1);
  REQUIRE(wait_for([&] { return m.prog->load<u32>(ch(kChanErr)) != 0; }));
  m.prog->store<u8>(kRegIntrCtrl, 0);
  m.fn.settle();
  CHECK(m.state() == static_cast<u64>(ChanState::kHalted));
}
