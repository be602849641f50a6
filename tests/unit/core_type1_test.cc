// The type1 backend: every errno condition of shared/spec/linux-vfio-uapi.md §3 in Linux's order
// where the order is observable, v1 and v2 unmap semantics, the full 64-bit range, VADDR, dirty
// pages and locked memory. Built-in topology: group 1 on VT-d dmar0 (48-bit, MSI window
// reserved), group 4 on nop0 (an emulated group).
#include <catch2/catch.hpp>

#include <linux/capability.h>
#include <sys/mman.h>

#include <cstring>
#include <vector>

#include "core/type1.h"
#include "core/uapi/vfio.h"
#include "tests/unit/core_harness.h"

using namespace vfio_emu;
using namespace vfio_emu::core;
using namespace vfio_emu::uapi;
using vfio_emu::test::Buffer;
using vfio_emu::test::Harness;

namespace {

constexpr u64 K4 = 4096;
constexpr u64 M2 = u64{1} << 21;
constexpr u32 RW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;

// A container with `group` in it and `type` set; returns the container fd.
int setup(Harness& h, const std::string& group, u32 type) {
  const int c = h.open("vfio/vfio");
  const int g = h.open(group);
  REQUIRE(g >= 0);
  REQUIRE(h.fails(g, VFIO_GROUP_SET_CONTAINER, &c) == 0);
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, type) == 0);
  return c;
}

int map(Harness& h, int c, u64 vaddr, u64 iova, u64 size, u32 flags = RW) {
  vfio_iommu_type1_dma_map m{sizeof(m), flags, vaddr, iova, size};
  return h.fails(c, VFIO_IOMMU_MAP_DMA, &m);
}

// Returns errno; *unmapped gets the size written back (or stays ~0 if nothing was written).
int unmap(Harness& h, int c, u64 iova, u64 size, u64* unmapped = nullptr, u32 flags = 0) {
  vfio_iommu_type1_dma_unmap u{};
  u.argsz = sizeof(u);
  u.flags = flags;
  u.iova = iova;
  u.size = size;
  const u64 sentinel = 0x5a5a5a5a5a5a5a5a;
  const u64 before = u.size;
  const int e = h.fails(c, VFIO_IOMMU_UNMAP_DMA, &u);
  if (unmapped) *unmapped = (e == 0 || u.size != before) ? u.size : sentinel;
  return e;
}

Type1Driver& driver(Harness& h, int c) {
  auto& cf = static_cast<ContainerFile&>(*h.file(c));
  return static_cast<Type1Driver&>(*cf.container->driver);
}

iommu::Translation translate(Harness& h, u64 iova, iommu::Access a = iommu::Access::kRead) {
  auto doms = h.emu.domains();
  REQUIRE(doms.size() == 1);
  return doms[0]->hw->translate(iova, a);
}

}  // namespace

// ---- GET_INFO --------------------------------------------------------------------------------

TEST_CASE("type1: GET_INFO reports sizes, then the capability chain", "[type1][info]") {
  Harness h;
  const int c = setup(h, "vfio/1", VFIO_TYPE1v2_IOMMU);
  vfio_iommu_type1_info info{};
  info.argsz = sizeof(info);
  REQUIRE(h.ioctl(c, VFIO_IOMMU_GET_INFO, &info) == 0);
  CHECK(info.flags == (VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS));
  CHECK(info.iova_pgsizes == 0x40201000);  // 4K | 2M | 1G
  // Two IOVA ranges (the MSI window is cut out): 88 + 16 * 2.
  CHECK(info.argsz == 120);
  CHECK(info.cap_offset == 0);  // the caps did not fit, so they were not copied

  std::vector<u8> buf(info.argsz, 0xee);
  auto* full = reinterpret_cast<vfio_iommu_type1_info*>(buf.data());
  full->argsz = info.argsz;
  REQUIRE(h.ioctl(c, VFIO_IOMMU_GET_INFO, full) == 0);
  CHECK(full->argsz == 120);  // left as the caller gave it
  REQUIRE(full->cap_offset == 24);
  auto* mig = reinterpret_cast<vfio_iommu_type1_info_cap_migration*>(buf.data() + 24);
  CHECK(mig->header.id == VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION);
  CHECK(mig->header.version == 1);
  CHECK(mig->header.next == 56);
  CHECK(mig->pgsize_bitmap == 4096);
  CHECK(mig->max_dirty_bitmap_size == 0x10000000);
  auto* avail = reinterpret_cast<vfio_iommu_type1_info_dma_avail*>(buf.data() + 56);
  CHECK(avail->header.id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
  CHECK(avail->header.next == 72);
  CHECK(avail->avail == 65535);
  auto* iova = reinterpret_cast<vfio_iommu_type1_info_cap_iova_range*>(buf.data() + 72);
  CHECK(iova->header.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
  CHECK(iova->header.next == 0);
  REQUIRE(iova->nr_iovas == 2);
  auto* r = reinterpret_cast<vfio_iova_range*>(buf.data() + 72 + 16);
  CHECK(r[0].start == 0);
  CHECK(r[0].end == 0xfedfffff);
  CHECK(r[1].start == 0xfef00000);
  CHECK(r[1].end == 0xffffffffffff);
}

TEST_CASE("type1: GET_INFO argsz rules", "[type1][info]") {
  Harness h;
  const int c = setup(h, "vfio/1", VFIO_TYPE1_IOMMU);
  struct {
    vfio_iommu_type1_info info;
    u8 after[8];
  } small{};
  small.info.argsz = 15;
  CHECK(h.fails(c, VFIO_IOMMU_GET_INFO, &small.info) == EINVAL);
  CHECK(h.fails(c, VFIO_IOMMU_GET_INFO, u64{0x10}) == EFAULT);
  // argsz 20: exactly min(argsz, 24) bytes come back.
  std::memset(&small, 0xcc, sizeof(small));
  small.info.argsz = 20;
  REQUIRE(h.ioctl(c, VFIO_IOMMU_GET_INFO, &small.info) == 0);
  CHECK(small.info.iova_pgsizes == 0x40201000);
  CHECK(small.info.argsz == 120);
  CHECK(small.info.cap_offset == 0);
  CHECK(small.info.pad == 0xcccccccc);  // byte 20.. untouched
}

TEST_CASE("type1: an emulated-only container has no IOVA list and CPU-page sizes",
          "[type1][info]") {
  Harness h;
  const int c = setup(h, "vfio/4", VFIO_TYPE1v2_IOMMU);
  vfio_iommu_type1_info info{};
  info.argsz = sizeof(info);
  REQUIRE(h.ioctl(c, VFIO_IOMMU_GET_INFO, &info) == 0);
  CHECK(info.iova_pgsizes == 0xfffffffffffff000);
  CHECK(info.argsz == 72);  // MIGRATION and DMA_AVAIL only
}

// ---- MAP_DMA ---------------------------------------------------------------------------------

TEST_CASE("type1: MAP_DMA programs the IOMMU with the caller's address", "[type1][map]") {
  Harness h;
  const int c = setup(h, "vfio/1", VFIO_TYPE1v2_IOMMU);
  Buffer buf(4 * M2);
  REQUIRE(map(h, c, buf.addr(), 0x40000000, 4 * M2) == 0);
  const auto t = translate(h, 0x40000000 + M2 + 0x123, iommu::Access::kWrite);
  REQUIRE(t.ok());
  CHECK(t.output == buf.addr() + M2 + 0x123);
  CHECK(t.page_size == M2);  // both sides 2 MiB aligned: superpages
  REQUIRE(map(h, c, buf.addr(), 0x80000000, K4, VFIO_DMA_MAP_FLAG_READ) == 0);
  CHECK(translate(h, 0x80000000, iommu::Access::kWrite).fault == iommu::FaultReason::kNoPermission);
  CHECK(driver(h, c).dmas().size() == 2);
  std::vector<u8> buf2(200);
  auto* full = reinterpret_cast<vfio_iommu_type1_info*>(buf2.data());
  full->argsz = 200;
  REQUIRE(h.ioctl(c, VFIO_IOMMU_GET_INFO, full) == 0);
  CHECK(reinterpret_cast<vfio_iommu_type1_info_dma_avail*>(buf2.data() + 56)->avail == 65533);
}

TEST_CASE("type1: MAP_DMA errors in Linux's order", "[type1][map]") {
  Harness h;
  const int c = setup(h, "vfio/1", VFIO_TYPE1v2_IOMMU);
  Buffer buf(M2);
  const u64 va = buf.addr();
  vfio_iommu_type1_dma_map m{31, RW, va, 0, K4};
  CHECK(h.fails(c, VFIO_IOMMU_MAP_DMA, &m) == EINVAL);            // argsz < 32
  CHECK(h.fails(c, VFIO_IOMMU_MAP_DMA, u64{0x10}) == EFAULT);     // copy_from_user
  CHECK(map(h, c, va, 0, K4, RW | 0x8) == EINVAL);                 // unknown flag
  CHECK(map(h, c, va, 0, 0) == EINVAL);                            // size 0
  CHECK(map(h, c, va, 0xfffffffffffff000, 2 * K4) == EOVERFLOW);   // iova + size - 1 wraps
  CHECK(map(h, c, 0xfffffffffffff000, 0, 2 * K4) == EOVERFLOW);    // vaddr wraps
  CHECK(map(h, c, va, 0xfffffffffffff000, 2 * K4, 0) == EOVERFLOW);  // before the prot check
  CHECK(map(h, c, va, 0, K4, 0) == EINVAL);                        // neither READ nor WRITE
  CHECK(map(h, c, va, 0, K4, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_VADDR) == EINVAL);
  CHECK(map(h, c, va + 1, 0, K4) == EINVAL);                       // alignment
  CHECK(map(h, c, va, 0x800, K4) == EINVAL);
  CHECK(map(h, c, va, 0, 0x1800) == EINVAL);
  CHECK(map(h, c, va, 0xfee00000, K4) == EINVAL);                  // the MSI window
  CHECK(map(h, c, va, 0xfedff000, 2 * K4) == EINVAL);              // straddles it
  CHECK(map(h, c, va, u64{1} << 48, K4) == EINVAL);                // beyond 48 bits
  CHECK(map(h, c, va, (u64{1} << 48) - K4, K4) == 0);              // the last page below
  CHECK(map(h, c, va, 0x1000, 2 * K4) == 0);
  CHECK(map(h, c, va, 0x2000, K4) == EEXIST);                      // any overlap
  CHECK(map(h, c, va, 0, 2 * K4) == EEXIST);
  CHECK(map(h, c, va, 0x2000, K4, VFIO_DMA_MAP_FLAG_VADDR) == EINVAL);  // not invalidated
  CHECK(map(h, c, va, 0x100000, K4, VFIO_DMA_MAP_FLAG_VADDR) == ENOENT);
  CHECK(driver(h, c).dmas().size() == 2);
}

TEST_CASE("type1: MAP_DMA checks the caller's memory like pinning would", "[type1][map]") {
  Harness h;
  const int c = setup(h, "vfio/1", VFIO_TYPE1v2_IOMMU);
  Buffer ro(2 * K4, PROT_READ);
  Buffer rw(2 * K4);
  CHECK(map(h, c, ro.addr(), 0, 2 * K4, VFIO_DMA_MAP_FLAG_READ) == 0);   // device reads: fine
  CHECK(map(h, c, ro.addr(), 0x10000, K4, RW) == EFAULT);                 // device writes: no
  CHECK(map(h, c, 0x1000, 0x20000, K4) == EFAULT);                        // nothing mapped
  {
    Buffer gone(K4);
    const u64 addr = gone.addr();
    (void)addr;
  }
  // Half valid: the first page is mapped, the next one is not.
  Buffer two(2 * K4);
  munmap(reinterpret_cast<void*>(two.addr() + K4), K4);
  CHECK(map(h, c, two.addr(), 0x30000, 2 * K4) == EFAULT);
  mmap(reinterpret_cast<void*>(two.addr() + K4), K4, PROT_READ | PROT_WRITE,
       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  CHECK(map(h, c, two.addr(), 0x30000, 2 * K4) == 0);
  CHECK(driver(h, c).dmas().size() == 2);
  CHECK(h.emu.locked_memory().charged(getpid()) == 4 * K4);
}

TEST_CASE("type1: RLIMIT_MEMLOCK and CAP_IPC_LOCK", "[type1][map]") {
  Harness h;
  const int c = setup(h, "vfio/1", VFIO_TYPE1v2_IOMMU);
  Buffer buf(16 * K4);
  h.memlock_limit_bytes = 8 * K4;
  CHECK(map(h, c, buf.addr(), 0, 6 * K4) == 0);
  CHECK(map(h, c, buf.addr(), 0x100000, 3 * K4) == ENOMEM);  // 6 + 3 > 8 pages
  CHECK(map(h, c, buf.addr(), 0x100000, 2 * K4) == 0);       // 6 + 2 = 8: allowed
  CHECK(map(h, c, buf.addr(), 0x200000, K4) == ENOMEM);
  h.capabilities.insert(CAP_IPC_LOCK);
  CHECK(map(h, c, buf.addr(), 0x200000, 8 * K4) == 0);
  h.capabilities.clear();
  // Page by page, Linux pins first and checks the limit second: an unpinnable page 0 is EFAULT
  // even over the limit, a good page 0 over the limit is ENOMEM even if page 1 is unpinnable.
  CHECK(map(h, c, 0x1000, 0x300000, K4) == EFAULT);
  Buffer half(2 * K4);
  munmap(reinterpret_cast<void*>(half.addr() + K4), K4);
  CHECK(map(h, c, half.addr(), 0x300000, 2 * K4) == ENOMEM);
  h.memlock_limit_bytes = iommu::kU64Max;
  CHECK(map(h, c, half.addr(), 0x300000, 2 * K4) == EFAULT);
  mmap(reinterpret_cast<void*>(half.addr() + K4), K4, PROT_READ | PROT_WRITE,
       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  u64 n = 0;
  REQUIRE(unmap(h, c, 0, 0, &n, VFIO_DMA_UNMAP_FLAG_ALL) == 0);
  CHECK(n == 16 * K4);
  CHECK(h.emu.locked_memory().charged(getpid()) == 0);
}

TEST_CASE("type1: the DMA entry limit", "[type1][map]") {
  Topology t = Topology::builtin();
  t.limits.dma_entry_limit = 3;
  Harness h(std::move(t));
  const int c = setup(h, "vfio/1", VFIO_TYPE1v2_IOMMU);
  Buffer buf(K4);
  for (u64 i = 0; i < 3; ++i) REQUIRE(map(h, c, buf.addr(), i * K4, K4) == 0);  // not merged
  CHECK(map(h, c, buf.addr(), 3 * K4, K4) == ENOSPC);
  CHECK(map(h, c, buf.addr(), 0, K4) == EEXIST);  // the overlap check comes first
  REQUIRE(unmap(h, c, 0, K4) == 0);
  CHECK(map(h, c, buf.addr(), 3 * K4, K4) == 0);
}

TEST_CASE("type1: emulated groups record mappings without touching memory", "[type1][map]") {
  Harness h;
  const int c = setup(h, "vfio/4", VFIO_TYPE1_IOMMU);
  // Nothing is pinned, so nothing is checked: as with an mdev-only container.
  CHECK(map(h, c, 0x1000, 0x0, K4) == 0);
  CHECK(h.emu.locked_memory().charged(getpid()) == 0);
  CHECK(driver(h, c).dmas().size() == 1);
}

TEST_CASE("type1: the first IOMMU-backed group pins and maps what emulated groups recorded",
          "[type1][replay]") {
  // vfio_iommu_replay: mappings made while the container held only emulated (nop) groups are
  // pinned and programmed into the domain of the first group with a real IOMMU.
  Harness h;
  const int c = setup(h, "vfio/4", VFIO_TYPE1v2_IOMMU);
  Buffer buf(4 * K4);
  REQUIRE(map(h, c, buf.addr(), 0x100000, 2 * K4) == 0);
  REQUIRE(h.emu.locked_memory().charged(getpid()) == 0);
  const int g1 = h.open("vfio/1");
  SECTION("it joins: the mapping translates, its pages are charged") {
    REQUIRE(h.fails(g1, VFIO_GROUP_SET_CONTAINER, &c) == 0);
    const auto t = translate(h, 0x101234, iommu::Access::kWrite);
    REQUIRE(t.ok());
    CHECK(t.output == buf.addr() + K4 + 0x234);
    CHECK(h.emu.locked_memory().charged(getpid()) == 2 * K4);
    CHECK(driver(h, c).dmas().begin()->second.iommu_mapped);
    // A later map goes straight into the domain; unmapping all uncharges all.
    REQUIRE(map(h, c, buf.addr(), 0x200000, K4) == 0);
    CHECK(h.emu.locked_memory().charged(getpid()) == 3 * K4);
    u64 n = 0;
    REQUIRE(unmap(h, c, 0, 0, &n, VFIO_DMA_UNMAP_FLAG_ALL) == 0);
    CHECK(n == 3 * K4);
    CHECK(h.emu.locked_memory().charged(getpid()) == 0);
  }
  SECTION("over RLIMIT_MEMLOCK: ENOMEM, and nothing stays charged or attached") {
    REQUIRE(map(h, c, buf.addr(), 0x200000, 2 * K4) == 0);
    h.memlock_limit_bytes = 3 * K4;  // the first mapping fits, the second does not
    CHECK(h.fails(g1, VFIO_GROUP_SET_CONTAINER, &c) == ENOMEM);
    CHECK(h.emu.locked_memory().charged(getpid()) == 0);
    CHECK(h.emu.domains().empty());
    h.memlock_limit_bytes = iommu::kU64Max;
    CHECK(h.fails(g1, VFIO_GROUP_SET_CONTAINER, &c) == 0);
    CHECK(h.emu.locked_memory().charged(getpid()) == 4 * K4);
  }
  SECTION("memory gone since the map: EFAULT, and nothing stays charged or attached") {
    REQUIRE(map(h, c, 0x1000, 0x300000, K4) == 0);  // recorded, never looked at
    CHECK(h.fails(g1, VFIO_GROUP_SET_CONTAINER, &c) == EFAULT);
    CHECK(h.emu.locked_memory().charged(getpid()) == 0);
    CHECK(h.emu.domains().empty());
    CHECK_FALSE(driver(h, c).dmas().begin()->second.iommu_mapped);
  }
}

// ---- the full 64-bit range -------------------------------------------------------------------

TEST_CASE("type1: a mapping that ends at 2^64-1 can be created and removed", "[type1][range]") {
  Harness h;
  const int c = setup(h, "vfio/4", GENERATE(VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU));
  Buffer buf(K4);
  const u64 last_page = 0xfffffffffffff000;
  REQUIRE(map(h, c, buf.addr(), last_page, K4) == 0);
  u64 n = 0;
  SECTION("by range") {
    REQUIRE(unmap(h, c, last_page, K4, &n) == 0);
    CHECK(n == K4);
  }
  SECTION("by UNMAP_ALL") {
    REQUIRE(unmap(h, c, 0, 0, &n, VFIO_DMA_UNMAP_FLAG_ALL) == 0);
    CHECK(n == K4);
  }
  CHECK(driver(h, c).dmas().empty());
  // Two pages from the last page: both directions overflow (vfio_dma_map_limit_test).
  CHECK(map(h, c, buf.addr(), last_page, 2 * K4) == EOVERFLOW);
  CHECK(unmap(h, c, last_page, 2 * K4, &n) == EOVERFLOW);
}

// ---- UNMAP_DMA -------------------------------------------------------------------------------

TEST_CASE("type1: UNMAP_DMA errors in Linux's order; nothing is written back", "[type1][unmap]") {
  Harness h;
  const int c = setup(h, "vfio/1", VFIO_TYPE1v2_IOMMU);
  vfio_iommu_type1_dma_unmap u{23, 0, 0, K4};
  CHECK(h.fails(c, VFIO_IOMMU_UNMAP_DMA, &u) == EINVAL);
  CHECK(h.fails(c, VFIO_IOMMU_UNMAP_DMA, u64{0x10}) == EFAULT);
  u64 n = 0;
  CHECK(unmap(h, c, 0, K4, &n, 0x8) == EINVAL);
  CHECK(unmap(h, c, 0, K4, &n, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL) ==
        EINVAL);
  CHECK(unmap(h, c, 0x800, K4, &n) == EINVAL);
  CHECK(unmap(h, c, 0x1000, 0, &n, VFIO_DMA_UNMAP_FLAG_ALL) == EINVAL);  // ALL needs 0/0
  CHECK(unmap(h, c, 0x1000, K4, &n, VFIO_DMA_UNMAP_FLAG_ALL) == EINVAL);
  CHECK(unmap(h, c, 0, 0, &n) == EINVAL);
  CHECK(unmap(h, c, 0, 0x1800, &n) == EINVAL);
  CHECK(unmap(h, c, 0xfffffffffffff000, 2 * K4, &n) == EOVERFLOW);
  CHECK(n == 0x5a5a5a5a5a5a5a5a);  // errors leave the struct alone
  CHECK(unmap(h, c, 0x100000, K4, &n) == 0);  // an empty range is not an error
  CHECK(n == 0);
}

TEST_CASE("type1 v1: unmaps whole mappings from their first byte", "[type1][unmap]") {
  Harness h;
  const int c = setup(h, "vfio/1", VFIO_TYPE1_IOMMU);
  Buffer buf(16 * K4);
  REQUIRE(map(h, c, buf.addr(), 0x10000, 4 * K4) == 0);
  REQUIRE(map(h, c, buf.addr(), 0x20000, 4 * K4) == 0);
  u64 n = 0;
  // Starting inside a mapping: success, nothing unmapped, even with later mappings in range.
  REQUIRE(unmap(h, c, 0x11000, 0x20000, &n) == 0);
  CHECK(n == 0);
  CHECK(driver(h, c).dmas().size() == 2);
  // Covering the first byte takes the whole mapping, past the requested end.
  REQUIRE(unmap(h, c, 0x10000, K4, &n) == 0);
  CHECK(n == 4 * K4);
  CHECK(translate(h, 0x13000).fault == iommu::FaultReason::kNotPresent);
  REQUIRE(unmap(h, c, 0x0, 0x21000, &n) == 0);
  CHECK(n == 4 * K4);
  CHECK(driver(h, c).dmas().empty());
}

TEST_CASE("type1 v2: never bisects; may remove several", "[type1][unmap]") {
  Harness h;
  const int c = setup(h, "vfio/1", VFIO_TYPE1v2_IOMMU);
  Buffer buf(16 * K4);
  REQUIRE(map(h, c, buf.addr(), 0x10000, 4 * K4) == 0);
  REQUIRE(map(h, c, buf.addr(), 0x20000, 4 * K4) == 0);
  REQUIRE(map(h, c, buf.addr(), 0x30000, K4) == 0);
  u64 n = 0;
  CHECK(unmap(h, c, 0x11000, K4, &n) == EINVAL);        // first byte inside a mapping
  CHECK(unmap(h, c, 0x10000, K4, &n) == EINVAL);        // last byte inside a mapping
  CHECK(unmap(h, c, 0x0, 0x21000, &n) == EINVAL);
  CHECK(driver(h, c).dmas().size() == 3);
  REQUIRE(unmap(h, c, 0x0, 0x24000, &n) == 0);          // two whole mappings and the gaps
  CHECK(n == 8 * K4);
  CHECK(translate(h, 0x30000).ok());
  REQUIRE(unmap(h, c, 0, 0, &n, VFIO_DMA_UNMAP_FLAG_ALL) == 0);
  CHECK(n == K4);
  REQUIRE(unmap(h, c, 0, 0, &n, VFIO_DMA_UNMAP_FLAG_ALL) == 0);
  CHECK(n == 0);
}

// ---- VADDR -----------------------------------------------------------------------------------

TEST_CASE("type1: VADDR invalidate and update (live update)", "[type1][vaddr]") {
  Harness h;
  const int c = setup(h, "vfio/1", VFIO_TYPE1v2_IOMMU);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_UPDATE_VADDR) == 1);
  Buffer a(4 * K4), b(4 * K4);
  REQUIRE(map(h, c, a.addr(), 0x10000, 2 * K4) == 0);
  REQUIRE(map(h, c, a.addr(), 0x20000, 2 * K4) == 0);
  u64 n = 0;
  REQUIRE(unmap(h, c, 0x10000, 2 * K4, &n, VFIO_DMA_UNMAP_FLAG_VADDR) == 0);
  CHECK(n == 2 * K4);
  CHECK(translate(h, 0x10000).ok());  // DMA goes on; only the vaddr is invalid
  // Invalidating a range with one already-invalid mapping fails and rolls back this call.
  CHECK(unmap(h, c, 0x0, 0x30000, &n, VFIO_DMA_UNMAP_FLAG_VADDR) == EINVAL);
  CHECK_FALSE(driver(h, c).dmas().at(0x20000).vaddr_invalid);
  // A group cannot join while a vaddr is invalid.
  const int g2 = h.open("vfio/2");
  CHECK(h.fails(g2, VFIO_GROUP_SET_CONTAINER, &c) == EBUSY);
  CHECK(map(h, c, b.addr(), 0x10000, K4, VFIO_DMA_MAP_FLAG_VADDR) == EINVAL);  // size differs
  REQUIRE(map(h, c, b.addr(), 0x10000, 2 * K4, VFIO_DMA_MAP_FLAG_VADDR) == 0);
  CHECK(driver(h, c).dmas().at(0x10000).vaddr == b.addr());
  CHECK(h.fails(g2, VFIO_GROUP_SET_CONTAINER, &c) == 0);
}

TEST_CASE("type1: VADDR is refused with emulated groups", "[type1][vaddr]") {
  Harness h;
  const int c = setup(h, "vfio/4", VFIO_TYPE1v2_IOMMU);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_UPDATE_VADDR) == 0);
  CHECK(unmap(h, c, 0, K4, nullptr, VFIO_DMA_UNMAP_FLAG_VADDR) == EBUSY);
}

// ---- dirty pages -----------------------------------------------------------------------------

TEST_CASE("type1: dirty page tracking reports every mapped page", "[type1][dirty]") {
  Harness h;
  const int c = setup(h, "vfio/1", VFIO_TYPE1v2_IOMMU);
  Buffer buf(64 * K4);
  REQUIRE(map(h, c, buf.addr(), 0x100000, 3 * K4) == 0);
  REQUIRE(map(h, c, buf.addr(), 0x100000 + 70 * K4, 2 * K4) == 0);

  // The kernel's layout: the 8-byte header, then the range at data[].
  alignas(8) u8 req_raw[sizeof(vfio_iommu_type1_dirty_bitmap) +
                        sizeof(vfio_iommu_type1_dirty_bitmap_get)] = {};
  struct Req {
    vfio_iommu_type1_dirty_bitmap& db;
    vfio_iommu_type1_dirty_bitmap_get& get;
  } req{*reinterpret_cast<vfio_iommu_type1_dirty_bitmap*>(req_raw),
        *reinterpret_cast<vfio_iommu_type1_dirty_bitmap_get*>(req_raw + 8)};
  req.db.argsz = sizeof(req_raw);
  req.db.flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
  std::vector<u64> bits(4, 0);
  req.get.iova = 0x100000;
  req.get.size = 128 * K4;
  req.get.bitmap.pgsize = K4;
  req.get.bitmap.size = bits.size() * 8;
  req.get.bitmap.data = reinterpret_cast<decltype(req.get.bitmap.data)>(bits.data());
  CHECK(h.fails(c, VFIO_IOMMU_DIRTY_PAGES, req_raw) == EINVAL);  // tracking not started

  vfio_iommu_type1_dirty_bitmap start{sizeof(start), VFIO_IOMMU_DIRTY_PAGES_FLAG_START};
  REQUIRE(h.ioctl(c, VFIO_IOMMU_DIRTY_PAGES, &start) == 0);
  REQUIRE(h.ioctl(c, VFIO_IOMMU_DIRTY_PAGES, &start) == 0);  // idempotent
  REQUIRE(h.ioctl(c, VFIO_IOMMU_DIRTY_PAGES, req_raw) == 0);
  CHECK(bits[0] == 0x7);
  CHECK(bits[1] == (u64{3} << 6));  // pages 70 and 71
  CHECK(bits[2] == 0);
  // update_user_bitmap: a mapping's words are written whole; only the bits below its start in
  // its first word are ORed with what is there (the user is expected to pre-zero the buffer).
  bits.assign(4, 0);
  bits[0] = u64{1} << 40;  // after the first mapping, in a word it writes: overwritten
  bits[1] = u64{1} << 1;   // below the second mapping's start (bit 70 = word 1, bit 6): kept
  REQUIRE(h.ioctl(c, VFIO_IOMMU_DIRTY_PAGES, req_raw) == 0);
  CHECK(bits[0] == 0x7);
  CHECK(bits[1] == ((u64{3} << 6) | (u64{1} << 1)));

  // Range rules.
  req.get.size = 128 * K4 + 1;
  CHECK(h.fails(c, VFIO_IOMMU_DIRTY_PAGES, req_raw) == EINVAL);  // size not page aligned
  req.get.size = 128 * K4;
  req.get.iova = 0x101000;  // starts inside the first mapping
  CHECK(h.fails(c, VFIO_IOMMU_DIRTY_PAGES, req_raw) == EINVAL);
  req.get.iova = 0x100000;
  req.get.bitmap.pgsize = M2;
  CHECK(h.fails(c, VFIO_IOMMU_DIRTY_PAGES, req_raw) == EINVAL);
  req.get.bitmap.pgsize = K4;
  req.get.bitmap.size = 8;  // 128 pages need 16 bytes
  CHECK(h.fails(c, VFIO_IOMMU_DIRTY_PAGES, req_raw) == EINVAL);
  req.get.bitmap.size = 32;
  req.db.argsz = 8 + 39;
  CHECK(h.fails(c, VFIO_IOMMU_DIRTY_PAGES, req_raw) == EINVAL);
  req.db.argsz = sizeof(req_raw);
  req.db.flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP;
  CHECK(h.fails(c, VFIO_IOMMU_DIRTY_PAGES, req_raw) == EINVAL);
  req.db.flags = 0;
  CHECK(h.fails(c, VFIO_IOMMU_DIRTY_PAGES, req_raw) == EINVAL);

  // UNMAP with GET_DIRTY_BITMAP reports and removes.
  alignas(8) u8 un_raw[sizeof(vfio_iommu_type1_dma_unmap) + sizeof(vfio_bitmap)] = {};
  struct Un {
    vfio_iommu_type1_dma_unmap& u;
    vfio_bitmap& bm;
  } un{*reinterpret_cast<vfio_iommu_type1_dma_unmap*>(un_raw),
       *reinterpret_cast<vfio_bitmap*>(un_raw + sizeof(vfio_iommu_type1_dma_unmap))};
  std::vector<u64> ubits(1, 0);
  un.u.argsz = sizeof(un_raw);
  un.u.flags = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
  un.u.iova = 0x100000;
  un.u.size = 64 * K4;
  un.bm.pgsize = K4;
  un.bm.size = 8;
  un.bm.data = reinterpret_cast<decltype(un.bm.data)>(ubits.data());
  REQUIRE(h.ioctl(c, VFIO_IOMMU_UNMAP_DMA, un_raw) == 0);
  CHECK(un.u.size == 3 * K4);
  CHECK(ubits[0] == 0x7);

  vfio_iommu_type1_dirty_bitmap stop{sizeof(stop), VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP};
  REQUIRE(h.ioctl(c, VFIO_IOMMU_DIRTY_PAGES, &stop) == 0);
  CHECK(h.fails(c, VFIO_IOMMU_UNMAP_DMA, un_raw) == EINVAL);  // not tracking any more
}

TEST_CASE("type1 v1: no dirty tracking", "[type1][dirty]") {
  Harness h;
  const int c = setup(h, "vfio/1", VFIO_TYPE1_IOMMU);
  vfio_iommu_type1_dirty_bitmap start{sizeof(start), VFIO_IOMMU_DIRTY_PAGES_FLAG_START};
  CHECK(h.fails(c, VFIO_IOMMU_DIRTY_PAGES, &start) == EACCES);
  CHECK(h.fails(c, VFIO_IOMMU_DIRTY_PAGES, u64{0x10}) == EACCES);  // before any copy
}

TEST_CASE("type1: check_extension once set", "[type1]") {
  Harness h;
  const int c = setup(h, "vfio/1", VFIO_TYPE1v2_IOMMU);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU) == 1);  // VT-d snoop control
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) == 1);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_IOMMU) == 0);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL) == 1);
}
