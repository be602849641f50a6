// The VFIO container ioctls on an iommufd fd (shared/spec §5.9): without and with a compat IOAS,
// the group joining through VFIO_GROUP_SET_CONTAINER, GET_INFO's exact argsz and capabilities,
// MAP/UNMAP semantics (struct copied back even on error, type1 v1 emulated by splitting), the
// full 64-bit range, and a device attached to the compat IOAS through its cdev.
#include <cstring>
#include <vector>

#include "tests/unit/iommufd/iommufd_helpers.h"

using namespace vfio_emu;
using namespace vfio_emu::test;

namespace {

constexpr u32 kMapRW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;

int map_dma(Harness& h, int fd, u64 vaddr, u64 iova, u64 size, u32 flags = kMapRW) {
  vfio_iommu_type1_dma_map m{sizeof(m), flags, vaddr, iova, size};
  return h.fails(fd, VFIO_IOMMU_MAP_DMA, &m);
}

// Returns errno; *out gets the struct as it came back.
int unmap_dma(Harness& h, int fd, u64 iova, u64 size, vfio_iommu_type1_dma_unmap* out = nullptr,
              u32 flags = 0) {
  vfio_iommu_type1_dma_unmap u{};
  u.argsz = sizeof(u);
  u.flags = flags;
  u.iova = iova;
  u.size = size;
  const int e = h.fails(fd, VFIO_IOMMU_UNMAP_DMA, &u);
  if (out) *out = u;
  return e;
}

// /dev/iommu with group `group` joined to it; returns the iommufd, *group_fd the group.
int join(Harness& h, const char* group = "vfio/1", int* group_fd = nullptr) {
  const int fd = h.open("iommu");
  const int g = h.open(group);
  REQUIRE(g >= 0);
  REQUIRE(h.fails(g, VFIO_GROUP_SET_CONTAINER, &fd) == 0);
  if (group_fd) *group_fd = g;
  return fd;
}

u32 compat_ioas_id(Harness& h, int fd) {
  iommu_vfio_ioas v{sizeof(v), 0, IOMMU_VFIO_IOAS_GET, 0};
  REQUIRE(h.ioctl(fd, IOMMU_VFIO_IOAS, &v) == 0);
  return v.ioas_id;
}

}  // namespace

TEST_CASE("compat: without a compat IOAS", "[compat]") {
  Harness h;
  const int fd = h.open("iommu");
  CHECK(h.ioctl(fd, VFIO_GET_API_VERSION) == 0);
  for (u32 ext : {VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_UNMAP_ALL, VFIO_NOIOMMU_IOMMU})
    CHECK(h.ioctl(fd, VFIO_CHECK_EXTENSION, ext) == 1);
  for (u32 ext : {VFIO_SPAPR_TCE_IOMMU, VFIO_EEH, VFIO_TYPE1_NESTING_IOMMU,
                  VFIO_SPAPR_TCE_v2_IOMMU, VFIO_UPDATE_VADDR, 42u})
    CHECK(h.ioctl(fd, VFIO_CHECK_EXTENSION, ext) == 0);
  CHECK(h.fails(fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU) == ENODEV);
  CHECK(h.fails(fd, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU) == EINVAL);  // EINVAL, not ENODEV
  CHECK(h.fails(fd, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU) == EINVAL);
  CHECK(h.fails(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == ENODEV);   // no group yet
  vfio_iommu_type1_info info{};
  info.argsz = 15;
  CHECK(h.fails(fd, VFIO_IOMMU_GET_INFO, &info) == EINVAL);
  CHECK(h.fails(fd, VFIO_IOMMU_GET_INFO, u64{0x10}) == EFAULT);
  info.argsz = sizeof(info);
  CHECK(h.fails(fd, VFIO_IOMMU_GET_INFO, &info) == ENODEV);
  Buffer buf(K4);
  vfio_iommu_type1_dma_map m{31, kMapRW, buf.addr(), 0, K4};
  CHECK(h.fails(fd, VFIO_IOMMU_MAP_DMA, &m) == EINVAL);
  CHECK(map_dma(h, fd, buf.addr(), 0, K4, kMapRW | VFIO_DMA_MAP_FLAG_VADDR) == EINVAL);
  CHECK(map_dma(h, fd, buf.addr(), 0, K4) == ENODEV);
  CHECK(unmap_dma(h, fd, 0, K4, nullptr, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) == EINVAL);
  CHECK(unmap_dma(h, fd, 0, K4) == ENODEV);
  CHECK(h.fails(fd, VFIO_IOMMU_DIRTY_PAGES, &info) == ENOTTY);
  CHECK(h.fails(fd, VFIO_IOMMU_ENABLE) == ENOTTY);
}

TEST_CASE("compat: a group joining creates the compat IOAS", "[compat][group]") {
  Harness h;
  int g = -1;
  const int fd = join(h, "vfio/1", &g);
  vfio_group_status s{sizeof(s), 0};
  REQUIRE(h.ioctl(g, VFIO_GROUP_GET_STATUS, &s) == 0);
  CHECK(s.flags == (VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET));
  const u32 ioas = compat_ioas_id(h, fd);
  CHECK(ioas == 1);
  CHECK(h.fails(g, VFIO_GROUP_SET_CONTAINER, &fd) == EINVAL);  // already set
  // A second group reuses it.
  const int g2 = h.open("vfio/2");
  REQUIRE(h.fails(g2, VFIO_GROUP_SET_CONTAINER, &fd) == 0);
  CHECK(compat_ioas_id(h, fd) == ioas);
  // No domain exists for a group: DMA starts at GET_DEVICE_FD in Linux.
  CHECK(domains(h).empty());
  REQUIRE(h.ioctl(g, VFIO_GROUP_UNSET_CONTAINER) == 0);
  REQUIRE(h.close(g2) == 0);
  CHECK(compat_ioas_id(h, fd) == ioas);  // the IOAS stays with the context
  // Closing the iommufd while a group holds it: the group keeps the context.
  const int g3 = h.open("vfio/2");
  REQUIRE(h.fails(g3, VFIO_GROUP_SET_CONTAINER, &fd) == 0);
  REQUIRE(h.close(fd) == 0);
  REQUIRE(h.ioctl(g3, VFIO_GROUP_GET_STATUS, &s) == 0);
  CHECK(s.flags == (VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET));
  REQUIRE(h.close(g3) == 0);
}

TEST_CASE("compat: SET_IOMMU has no 'already set' check; CHECK_EXTENSION DMA_CC",
          "[compat]") {
  Harness h;
  const int fd = join(h);
  CHECK(h.ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  CHECK(h.ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  CHECK(h.ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) == 0);
  CHECK(h.fails(fd, VFIO_SET_IOMMU, 6) == EINVAL);
  CHECK(h.ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU) == 1);  // no HWPT: vacuously
}

TEST_CASE("compat: GET_INFO: exact argsz, DMA_AVAIL then IOVA_RANGE", "[compat][info]") {
  Harness h;
  const int fd = join(h);
  REQUIRE(h.ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  std::vector<u8> buf(200, 0xcc);
  auto* info = reinterpret_cast<vfio_iommu_type1_info*>(buf.data());
  info->argsz = 16;
  REQUIRE(h.ioctl(fd, VFIO_IOMMU_GET_INFO, info) == 0);
  CHECK(info->argsz == 72);  // 56 + 16 * one range
  CHECK(info->flags == (VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS));
  CHECK(info->iova_pgsizes == 0xfffffffffffff000);  // no domain: any size from 4K
  CHECK(info->cap_offset == 0xcccccccc);            // beyond the 16 bytes: untouched
  // Partial: DMA_AVAIL fits and is linked, IOVA_RANGE does not.
  std::fill(buf.begin(), buf.end(), 0xcc);
  info->argsz = 40;
  REQUIRE(h.ioctl(fd, VFIO_IOMMU_GET_INFO, info) == 0);
  CHECK(info->argsz == 72);
  CHECK(info->cap_offset == 0);
  auto* avail = reinterpret_cast<vfio_iommu_type1_info_dma_avail*>(buf.data() + 24);
  CHECK(avail->header.id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
  CHECK(avail->header.next == 40);
  CHECK(avail->avail == 0xffffffff);
  CHECK(buf[40] == 0xcc);
  // Whole: argsz comes back as the exact size even when the caller gave more.
  std::fill(buf.begin(), buf.end(), 0xcc);
  info->argsz = 200;
  REQUIRE(h.ioctl(fd, VFIO_IOMMU_GET_INFO, info) == 0);
  CHECK(info->argsz == 72);
  CHECK(info->cap_offset == 24);
  CHECK(info->pad == 0);
  CHECK(avail->header.version == 1);
  CHECK(avail->header.next == 40);
  auto* ranges = reinterpret_cast<vfio_iommu_type1_info_cap_iova_range*>(buf.data() + 40);
  CHECK(ranges->header.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
  CHECK(ranges->header.next == 0);
  REQUIRE(ranges->nr_iovas == 1);
  auto* r = reinterpret_cast<vfio_iova_range*>(buf.data() + 56);
  CHECK(r->start == 0);
  CHECK(r->end == kMax);
  CHECK(buf[72] == 0xcc);
}

TEST_CASE("compat: MAP_DMA and UNMAP_DMA", "[compat][map]") {
  Harness h;
  const int fd = join(h);
  REQUIRE(h.ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  Buffer buf(8 * K4);
  const u64 va = buf.addr();
  CHECK(map_dma(h, fd, va, 0x10000, 2 * K4, 0) == 0);  // flags 0: accepted (no domain)
  CHECK(map_dma(h, fd, va, 0x11000, K4) == EEXIST);
  CHECK(map_dma(h, fd, va, 0x20000, 0) == EINVAL);
  CHECK(map_dma(h, fd, va, kMax - K4 + 1, 2 * K4) == EOVERFLOW);
  CHECK(map_dma(h, fd, kMax - K4 + 1, 0x30000, 2 * K4) == EOVERFLOW);
  REQUIRE(map_dma(h, fd, va, 0x20000, 4 * K4) == 0);
  vfio_iommu_type1_dma_unmap u{};
  // Errors still copy the struct back, with the bytes unmapped so far.
  CHECK(unmap_dma(h, fd, 0x21000, K4, &u) == ENOENT);  // would bisect
  CHECK(u.size == 0);
  CHECK(unmap_dma(h, fd, 0x10000, 0x11000, &u) == ENOENT);  // removes 0x10000, then bisects
  CHECK(u.size == 2 * K4);
  CHECK(unmap_dma(h, fd, 0x20000, 0, &u) == EINVAL);
  CHECK(u.size == 0);
  CHECK(unmap_dma(h, fd, kMax - K4 + 1, 2 * K4, &u) == EOVERFLOW);
  CHECK(u.size == 0);
  // Since 6.18 an empty range is success with size 0, as in type1.
  REQUIRE(unmap_dma(h, fd, 0x50000, K4, &u) == 0);
  CHECK(u.size == 0);
  // ALL needs iova = size = 0; that EINVAL does not copy back.
  u.size = 77;
  vfio_iommu_type1_dma_unmap all{sizeof(all), VFIO_DMA_UNMAP_FLAG_ALL, 0, K4};
  CHECK(h.fails(fd, VFIO_IOMMU_UNMAP_DMA, &all) == EINVAL);
  CHECK(all.size == K4);
  all.size = 0;
  REQUIRE(h.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &all) == 0);
  CHECK(all.size == 4 * K4);
  // The last page of the 64-bit space, and unmap-all of it.
  REQUIRE(map_dma(h, fd, va, kMax - K4 + 1, K4) == 0);
  all.size = 0;
  REQUIRE(h.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &all) == 0);
  CHECK(all.size == K4);
}

TEST_CASE("compat: type1 (v1) is emulated by splitting mappings", "[compat][map]") {
  Harness h;
  const int fd = join(h);
  Buffer buf(8 * K4);
  vfio_iommu_type1_dma_unmap u{};
  SECTION("v2 refuses to bisect") {
    REQUIRE(h.ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
    REQUIRE(map_dma(h, fd, buf.addr(), 0x10000, 8 * K4) == 0);
    CHECK(unmap_dma(h, fd, 0x12000, 2 * K4, &u) == ENOENT);
  }
  SECTION("v1 unmaps inside a mapping") {
    REQUIRE(h.ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) == 0);
    iommu_option o{sizeof(o), IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, 0,
                   compat_ioas_id(h, fd), 9};
    REQUIRE(h.ioctl(fd, IOMMU_OPTION, &o) == 0);
    CHECK(o.val64 == 0);  // large pages are off
    REQUIRE(map_dma(h, fd, buf.addr(), 0x10000, 8 * K4) == 0);
    REQUIRE(unmap_dma(h, fd, 0x12000, 2 * K4, &u) == 0);
    CHECK(u.size == 2 * K4);
    REQUIRE(unmap_dma(h, fd, 0x10000, 2 * K4, &u) == 0);  // the pieces are mappings now
    CHECK(u.size == 2 * K4);
    REQUIRE(unmap_dma(h, fd, 0x14000, 4 * K4, &u) == 0);
    CHECK(u.size == 4 * K4);
    REQUIRE(map_dma(h, fd, buf.addr(), 0x10000, 2 * K4) == 0);
    // A cut must be page aligned: EINVAL, and nothing is copied back.
    u.size = 5;
    vfio_iommu_type1_dma_unmap odd{sizeof(odd), 0, 0x10800, K4};
    CHECK(h.fails(fd, VFIO_IOMMU_UNMAP_DMA, &odd) == EINVAL);
    CHECK(odd.size == K4);
  }
}

TEST_CASE("compat: a device attached to the compat IOAS gets its mappings", "[compat][flow]") {
  Harness h;
  int g = -1;
  const int fd = join(h, "vfio/1", &g);
  REQUIRE(h.ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  Buffer buf(M2);
  REQUIRE(map_dma(h, fd, buf.addr(), 0x40000000, M2) == 0);
  CHECK(user_locked(h) == 0);  // a group does no DMA: nothing pinned
  REQUIRE(map_dma(h, fd, 0x10000, 0x50000000, K4) == 0);  // not even checked
  // GET_DEVICE_FD cannot be emulated; the cdev takes its place once the group fd is closed.
  const int dev_while_open = h.open("vfio/devices/vfio0");
  CHECK(bind(h, dev_while_open, fd) == EBUSY);
  REQUIRE(h.close(g) == 0);
  REQUIRE(bind(h, dev_while_open, fd) == 0);
  const u32 ioas = compat_ioas_id(h, fd);
  CHECK(attach(h, dev_while_open, ioas) == EFAULT);  // the unchecked mapping
  vfio_iommu_type1_dma_unmap u{};
  REQUIRE(unmap_dma(h, fd, 0x50000000, K4, &u) == 0);
  u32 hwpt = 0;
  REQUIRE(attach(h, dev_while_open, ioas, &hwpt) == 0);
  auto t = translate(h, 0x40000000 + 0x1234, iommu::Access::kWrite);
  REQUIRE(t.ok());
  CHECK(t.output == buf.addr() + 0x1234);
  CHECK(user_locked(h) == M2);
  CHECK(h.ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU) == 1);  // VT-d snoop control
  // With a domain: the domain's page sizes and the reserved MSI window show in GET_INFO.
  std::vector<u8> buf2(200, 0);
  auto* info = reinterpret_cast<vfio_iommu_type1_info*>(buf2.data());
  info->argsz = 200;
  REQUIRE(h.ioctl(fd, VFIO_IOMMU_GET_INFO, info) == 0);
  CHECK(info->iova_pgsizes == 0x40201000);
  CHECK(info->argsz == 88);
  // Type1 emulation cannot start once domains have mappings.
  CHECK(h.fails(fd, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) == EINVAL);
  CHECK(h.ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  // MAP_DMA through the compat layer now pins and programs the domain; flags 0 is refused by it.
  Buffer more(K4);
  REQUIRE(map_dma(h, fd, more.addr(), 0x60000000, K4) == 0);
  CHECK(translate(h, 0x60000000).output == more.addr());
  CHECK(map_dma(h, fd, more.addr(), 0x61000000, K4, 0) == EINVAL);
  CHECK(map_dma(h, fd, 0x10000, 0x62000000, K4) == EFAULT);
  vfio_iommu_type1_dma_unmap all{sizeof(all), VFIO_DMA_UNMAP_FLAG_ALL, 0, 0};
  REQUIRE(h.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &all) == 0);
  CHECK(all.size == M2 + K4);
  CHECK(user_locked(h) == 0);
}
