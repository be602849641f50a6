// The tools' inspect (list, maps, check) runs on the control thread while clients' files are
// released: it must never meet a file that is half released. Emulator::release reset an iommufd
// file's context under Emulator::mu but took the file out of the registry only after unlocking,
// so an inspect that was waiting for the lock could find the file with its context gone and
// dereference it (SIGSEGV; found by the chaos test, tests/integration/chaos.py).
#include <catch2/catch.hpp>

#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "core/inspect/check.h"
#include "core/inspect/list.h"
#include "core/inspect/maps.h"
#include "tests/unit/iommufd/iommufd_helpers.h"

namespace vfio_emu::test {
namespace {

TEST_CASE("inspect while iommufd files are released: never a half-released file",
          "[inspect][release]") {
  Harness h;
  constexpr u64 kAreas = 256;
  void* mem = mmap(nullptr, kAreas * K4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(mem != MAP_FAILED);
  const u64 base = reinterpret_cast<u64>(mem);

  std::atomic<bool> stop{false};
  std::atomic<u64> inspections{0};
  auto inspect = [&] {
    while (!stop) {
      core::inspect::list(h.emu);
      (void)core::inspect::maps(h.emu, {});
      core::inspect::check(h.emu);
      ++inspections;
    }
  };
  std::thread a(inspect), b(inspect);
  // Contexts that take a while to destroy (many areas, under Emulator::mu), one after another:
  // an inspect is then usually waiting for the lock when the release gives it up.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  int rounds = 0;
  for (; rounds < 400 && std::chrono::steady_clock::now() < deadline; ++rounds) {
    const int fd = h.open("iommu");
    REQUIRE(fd >= 0);
    const u32 ioas = ioas_alloc(h, fd);
    for (u64 i = 0; i < kAreas; ++i)  // apart, so that each is an area of its own
      REQUIRE(ioas_map_at(h, fd, ioas, base + i * K4, K4, 2 * i * K4) == 0);
    h.close(fd);
  }
  stop = true;
  a.join();
  b.join();
  munmap(mem, kAreas * K4);
  CHECK(rounds > 0);
  CHECK(inspections > 0);
  INFO(rounds << " contexts released, " << inspections << " inspections");
  CHECK(h.emu.files().empty());
}

}  // namespace
}  // namespace vfio_emu::test
