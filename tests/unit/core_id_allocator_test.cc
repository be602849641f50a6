// Object ids: the lowest free id first, as Linux's xa_alloc gives iommufd objects, without a scan
// of the ids in use (core/id_allocator.h); and 80,000 IOAS_ALLOC on one context.
#include <chrono>
#include <random>
#include <set>

#include "core/id_allocator.h"
#include "tests/unit/iommufd/iommufd_helpers.h"

using namespace vfio_emu;
using namespace vfio_emu::test;
using core::IdAllocator;

TEST_CASE("ids: the lowest free id first", "[ids]") {
  IdAllocator ids(1, 0x7fffffff);
  CHECK(*ids.alloc() == 1);
  CHECK(*ids.alloc() == 2);
  CHECK(*ids.alloc() == 3);
  CHECK(*ids.alloc() == 4);
  ids.free(2);
  ids.free(3);
  CHECK(ids.in_use() == 2);
  CHECK(*ids.alloc() == 2);
  ids.free(4);  // the top: 3 (free) and 4 become the free end of the range
  CHECK(ids.in_use() == 2);
  CHECK(*ids.alloc() == 3);
  CHECK(*ids.alloc() == 4);
  CHECK(*ids.alloc() == 5);
  // Ids never handed out, 0 and ids given back twice are ignored.
  ids.free(0);
  ids.free(99);
  ids.free(5);
  ids.free(5);
  CHECK(ids.in_use() == 4);
  CHECK(*ids.alloc() == 5);
}

TEST_CASE("ids: a full range is EBUSY, as xa_alloc says", "[ids]") {
  IdAllocator ids(1, 3);
  CHECK(*ids.alloc() == 1);
  CHECK(*ids.alloc() == 2);
  CHECK(*ids.alloc() == 3);
  auto full = ids.alloc();
  REQUIRE_FALSE(full);
  CHECK(full.error() == EBUSY);
  ids.free(2);
  CHECK(*ids.alloc() == 2);
  // The top of the 32-bit space does not wrap.
  IdAllocator top(0xfffffffe, 0xffffffff);
  CHECK(*top.alloc() == 0xfffffffe);
  CHECK(*top.alloc() == 0xffffffff);
  CHECK_FALSE(top.alloc());
  top.free(0xffffffff);
  CHECK(*top.alloc() == 0xffffffff);
}

TEST_CASE("ids: random allocations and releases agree with a scan for the lowest free id",
          "[ids]") {
  std::mt19937 rng(12345);
  IdAllocator ids(1, 200);
  std::set<u32> used;  // the reference: the lowest id not in it is the next
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (int step = 0; step < 200000 && std::chrono::steady_clock::now() < deadline; ++step) {
    if (rng() % 3 != 0) {
      u32 want = 1;
      while (used.count(want)) ++want;
      auto got = ids.alloc();
      if (want > 200) {
        REQUIRE_FALSE(got);
        continue;
      }
      REQUIRE(got);
      REQUIRE(*got == want);
      used.insert(want);
    } else if (!used.empty()) {
      auto it = used.begin();
      std::advance(it, rng() % used.size());
      ids.free(*it);
      used.erase(it);
    }
    REQUIRE(ids.in_use() == used.size());
  }
}

TEST_CASE("ids: 80,000 IOAS_ALLOC on one iommufd, then the holes lowest first",
          "[ids][iommufd]") {
  // Linux's ids for this sequence: 1..n in order; after destroying some, the lowest hole first.
  // The old scan took 39 s for this count in-process (quadratic); the loop is bounded by time as
  // well, so a slow machine checks fewer ids instead of failing.
  constexpr u32 kCount = 80000;
  core::Topology t = core::Topology::builtin();
  t.limits.iommufd_objects = kCount;
  Harness h(std::move(t));
  const int fd = h.open("iommu");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  u32 n = 0;
  while (n < kCount && std::chrono::steady_clock::now() < deadline) {
    iommu_ioas_alloc a{sizeof(a), 0, 0};
    REQUIRE(h.ioctl(fd, IOMMU_IOAS_ALLOC, &a) == 0);
    REQUIRE(a.out_ioas_id == n + 1);
    ++n;
  }
  if (n < kCount) WARN("only " << n << " of " << kCount << " allocations within the time bound");
  REQUIRE(n > 100);
  for (u32 id : {n, n / 2, 7u, n / 3, 1u}) REQUIRE(destroy(h, fd, id) == 0);
  for (u32 id : {1u, 7u, n / 3, n / 2, n}) CHECK(ioas_alloc(h, fd) == id);
  if (n == kCount) {
    iommu_ioas_alloc a{sizeof(a), 0, 0};
    CHECK(h.fails(fd, IOMMU_IOAS_ALLOC, &a) == ENOMEM);  // the limit: exactly kCount objects
  }
}
