// Random programs against the I/OAT model: whatever a driver writes, processing ends within its
// budget, never touches memory outside the fake machine's mappings (the fake refuses it), and a
// worker thread racing MMIO and resets neither hangs nor crashes. Bounded by time and count.
#include <catch2/catch.hpp>

#include <spdlog/sinks/null_sink.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "tests/unit/ioat/fake_machine.h"

using namespace vfio_emu;
using namespace vfio_emu::devices::ioat;
using namespace vfio_emu::devices::ioat::testing;
using namespace std::chrono_literals;

namespace {

constexpr u64 kMem = 0x100000;  // one 64 KiB window holding descriptors and data
constexpr u64 kMemSize = 0x10000;

// A register offset a driver might write (mostly channel 0's), a size and a value.
void random_mmio(Bench& b, std::mt19937_64& rng) {
  static constexpr u64 kTargets[] = {kChanCtrl, kChanCmd, kChanDmaCount, kChanChainAddr,
                                     kChanCmp, kChanErr, kChanErrMask};
  static constexpr u32 kSizes[] = {1, 2, 4, 8};
  u64 off = rng() % 4 == 0 ? rng() % 0x200 : Bench::ch(kTargets[rng() % 7], rng() % 2);
  const u32 size = kSizes[rng() % 4];
  u64 value = rng();
  if (rng() % 2) value = kMem + (value % kMemSize & ~u64{0x3f});  // a plausible address
  if (rng() % 3 == 0) value &= 0xff;
  b.dev->mmio_write(off, value, size);
  (void)b.dev->mmio_read(rng() % 0x200, kSizes[rng() % 4]);
}

void scribble_descriptors(Bench& b, std::mt19937_64& rng) {
  for (int i = 0; i < 8; ++i) {
    DmaDescriptor d = copy_desc(kMem + rng() % kMemSize, kMem + rng() % kMemSize,
                                static_cast<u32>(rng() % 0x3000), kMem + (rng() % 64) * 64);
    if (rng() % 4 == 0) d.ctl = std::bit_cast<DescriptorControl>(static_cast<u32>(rng()));
    if (rng() % 8 == 0) d.next = rng();
    b.mem.poke(kMem + (rng() % 64) * 64, &d, sizeof d);
  }
}

// Random programs halt the channel thousands of times; their log lines would bury the output.
IoatConfig quiet_config(const char* name) {
  IoatConfig cfg;
  cfg.xfercap_log = 12;
  cfg.log = spdlog::get(name) ? spdlog::get(name) : spdlog::null_logger_mt(name);
  return cfg;
}

}  // namespace

TEST_CASE("ioat random: any program ends within the budget", "[ioat][random]") {
  IoatConfig cfg = quiet_config("ioat-random");
  cfg.channels = 2;
  Bench b(cfg);
  b.mem.map(kMem, kMemSize);
  std::mt19937_64 rng(0x10a7);
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  int rounds = 0;
  for (; rounds < 20000 && std::chrono::steady_clock::now() < deadline; ++rounds) {
    if (rounds % 16 == 0) scribble_descriptors(b, rng);
    random_mmio(b, rng);
    const u32 budget = static_cast<u32>(rng() % 64);
    CHECK(b.dev->process(budget) <= budget);
    if (rounds % 500 == 0) b.dev->reset();
  }
  // Every access the model made was inside the machine or refused by it: the fake has no other
  // memory to write. What remains is bounded work.
  b.dev->process();
  CHECK_FALSE(b.dev->has_work());
  CHECK(rounds > 0);
}

TEST_CASE("ioat random: a worker racing MMIO and resets", "[ioat][random]") {
  Bench b(quiet_config("ioat-random-worker"));
  b.mem.map(kMem, kMemSize);
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    while (!stop)
      if (b.dev->wait_for_work(100ms)) b.dev->process(32);
  });
  std::mt19937_64 rng(0xd3a);
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  for (int i = 0; i < 20000 && std::chrono::steady_clock::now() < deadline; ++i) {
    if (i % 16 == 0) scribble_descriptors(b, rng);
    random_mmio(b, rng);
    if (i % 200 == 0) b.dev->reset();
  }
  stop = true;
  b.dev->wake();
  worker.join();
  b.dev->reset();
  CHECK(b.chansts() == static_cast<u64>(ChanState::kHalted));
  CHECK_FALSE(b.dev->has_work());
}
