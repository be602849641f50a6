// The iommufd node: every errno condition of shared/spec/linux-vfio-uapi.md §5.1-§5.8 and of the
// commands the spec leaves to upstream (HWPT_ALLOC, GET_HW_INFO), in Linux's order where the
// order is observable; the full 64-bit range (§6); IOVA allocation; mappings replicated into the
// domains of attached devices; pinning (EFAULT, RLIMIT_MEMLOCK) and what closing undoes.
// Built-in topology: vfio0/vfio1 behind VT-d dmar0 (48-bit, MSI window reserved), vfio2 behind
// TCE phb0, vfio3 behind nop0.
#include <linux/capability.h>
#include <sys/mman.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "iommu/vtd/vtd.h"
#include "tests/unit/iommufd/iommufd_helpers.h"

using namespace vfio_emu;
using namespace vfio_emu::test;

namespace {

constexpr u64 kMsiFirst = 0xfee00000;
constexpr u64 kMsiLast = 0xfeefffff;

// An iommufd with a device of the built-in topology bound and attached to a new IOAS.
struct Bound {
  Harness& h;
  int iommufd;
  int dev;
  u32 devid = 0;
  u32 ioas = 0;
  u32 hwpt = 0;
  Bound(Harness& hh, const std::string& cdev = "vfio/devices/vfio0", bool do_attach = true)
      : h(hh), iommufd(hh.open("iommu")), dev(hh.open(cdev)) {
    REQUIRE(bind(h, dev, iommufd, &devid) == 0);
    ioas = ioas_alloc(h, iommufd);
    if (do_attach) REQUIRE(attach(h, dev, ioas, &hwpt) == 0);
  }
};

}  // namespace

// ---- §5.1 calling convention -------------------------------------------------------------------

TEST_CASE("iommufd: size rules of every command", "[iommufd][abi]") {
  Harness h;
  const int fd = h.open("iommu");
  REQUIRE(fd >= 0);
  struct {
    iommu_ioas_alloc a;
    u8 tail[12];
  } big{};
  big.a.size = 11;  // below offsetofend(out_ioas_id)
  CHECK(h.fails(fd, IOMMU_IOAS_ALLOC, &big.a) == EINVAL);
  big.a.size = sizeof(big);
  big.tail[5] = 1;  // a byte the kernel does not know about
  CHECK(h.fails(fd, IOMMU_IOAS_ALLOC, &big.a) == E2BIG);
  big.tail[5] = 0;
  REQUIRE(h.ioctl(fd, IOMMU_IOAS_ALLOC, &big.a) == 0);  // zero tail: fine
  CHECK(big.a.out_ioas_id == 1);
  CHECK(h.fails(fd, IOMMU_IOAS_ALLOC, u64{0x10}) == EFAULT);  // get_user(size)
  CHECK(h.fails(fd, iommufd_io(0x95)) == ENOTTY);              // beyond the table
  CHECK(h.fails(fd, iommufd_io(0x7e)) == ENOTTY);              // a VFIO number compat does not know
  // Each table entry's min_size: one byte short is EINVAL (before anything else is looked at).
  const std::pair<u32, u32> mins[] = {
      {IOMMU_DESTROY, 8},          {IOMMU_IOAS_ALLOC, 12},     {IOMMU_IOAS_ALLOW_IOVAS, 24},
      {IOMMU_IOAS_COPY, 40},       {IOMMU_IOAS_IOVA_RANGES, 32}, {IOMMU_IOAS_MAP, 40},
      {IOMMU_IOAS_UNMAP, 24},      {IOMMU_OPTION, 24},         {IOMMU_VFIO_IOAS, 12},
      {IOMMU_HWPT_ALLOC, 24},      {IOMMU_GET_HW_INFO, 32},    {IOMMU_IOAS_MAP_FILE, 40},
      {IOMMU_HWPT_INVALIDATE, 32}, {IOMMU_IOAS_CHANGE_PROCESS, 8},
  };
  for (auto [cmd, min] : mins) {
    u8 buf[64] = {};
    const u32 size = min - 1;
    std::memcpy(buf, &size, 4);
    INFO("cmd " << std::hex << cmd);
    CHECK(h.fails(fd, cmd, buf) == EINVAL);
  }
  // A shorter struct is zero-extended: IOAS_MAP without the tail... is exactly 40. DESTROY of a
  // 12-byte struct with a zero tail reaches the command (ENOENT for id 0).
  struct {
    iommu_destroy d;
    u32 zero;
  } d12{{12, 0}, 0};
  CHECK(h.fails(fd, IOMMU_DESTROY, &d12.d) == ENOENT);
}

// ---- objects, IOAS_ALLOC, DESTROY --------------------------------------------------------------

TEST_CASE("iommufd: ids start at 1, are reused lowest first, ENOENT for a missing id",
          "[iommufd][objects]") {
  Harness h;
  const int fd = h.open("iommu");
  iommu_ioas_alloc a{sizeof(a), 1, 0};
  CHECK(h.fails(fd, IOMMU_IOAS_ALLOC, &a) == EOPNOTSUPP);
  CHECK(ioas_alloc(h, fd) == 1);
  CHECK(ioas_alloc(h, fd) == 2);
  CHECK(ioas_alloc(h, fd) == 3);
  CHECK(destroy(h, fd, 0) == ENOENT);
  CHECK(destroy(h, fd, 9) == ENOENT);
  CHECK(destroy(h, fd, 2) == 0);
  CHECK(destroy(h, fd, 2) == ENOENT);
  CHECK(ioas_alloc(h, fd) == 2);  // xa_alloc takes the lowest free id
  CHECK(ioas_alloc(h, fd) == 4);
  // Contexts are separate: another open starts at 1 again.
  const int fd2 = h.open("iommu");
  CHECK(ioas_alloc(h, fd2) == 1);
  u64 unmapped = 0;
  CHECK(ioas_unmap(h, fd2, 2, 0, kMax, &unmapped) == ENOENT);
}

TEST_CASE("iommufd: DESTROY is EBUSY while an object is referenced", "[iommufd][objects]") {
  Harness h;
  Bound b(h);
  CHECK(destroy(h, b.iommufd, b.devid) == EBUSY);  // VFIO holds the device object
  CHECK(destroy(h, b.iommufd, b.hwpt) == EBUSY);   // the device uses the HWPT
  CHECK(destroy(h, b.iommufd, b.ioas) == EBUSY);   // the HWPT holds the IOAS
  // A wrong-type id is ENOENT for commands that want an IOAS.
  u64 iova = 0;
  CHECK(ioas_map(h, b.iommufd, b.hwpt, 0x1000, K4, &iova) == ENOENT);
  CHECK(ioas_map(h, b.iommufd, b.devid, 0x1000, K4, &iova) == ENOENT);
  REQUIRE(detach(h, b.dev) == 0);  // the automatic HWPT goes with its last device
  CHECK(destroy(h, b.iommufd, b.hwpt) == ENOENT);
  CHECK(destroy(h, b.iommufd, b.ioas) == 0);
  CHECK(domains(h).empty());
}

// ---- IOAS_IOVA_RANGES, IOAS_ALLOW_IOVAS --------------------------------------------------------

TEST_CASE("iommufd: IOVA_RANGES of a fresh IOAS and the EMSGSIZE protocol", "[iommufd][ranges]") {
  Harness h;
  const int fd = h.open("iommu");
  const u32 ioas = ioas_alloc(h, fd);
  iommu_ioas_iova_ranges r{};
  r.size = sizeof(r);
  r.ioas_id = ioas;
  r.num_iovas = 0;
  r.out_iova_alignment = 77;
  CHECK(h.fails(fd, IOMMU_IOAS_IOVA_RANGES, &r) == EMSGSIZE);
  CHECK(r.num_iovas == 1);  // written back before EMSGSIZE
  CHECK(r.out_iova_alignment == 1);
  iommu_iova_range one{};
  r.allowed_iovas = reinterpret_cast<u64>(&one);
  REQUIRE(h.ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &r) == 0);
  CHECK(one.start == 0);
  CHECK(one.last == kMax);
  r.num_iovas = 1;
  r.allowed_iovas = 0x10;
  CHECK(h.fails(fd, IOMMU_IOAS_IOVA_RANGES, &r) == EFAULT);
  r.__reserved = 1;
  CHECK(h.fails(fd, IOMMU_IOAS_IOVA_RANGES, &r) == EOPNOTSUPP);
  r.__reserved = 0;
  r.ioas_id = 99;
  CHECK(h.fails(fd, IOMMU_IOAS_IOVA_RANGES, &r) == ENOENT);
}

TEST_CASE("iommufd: an attached VT-d device reserves its MSI window and the aperture",
          "[iommufd][ranges]") {
  Harness h;
  Bound b(h);
  u64 alignment = 0;
  auto ranges = iova_ranges(h, b.iommufd, b.ioas, &alignment);
  CHECK(alignment == K4);  // the domain's smallest page
  REQUIRE(ranges.size() == 2);
  CHECK(ranges[0].start == 0);
  CHECK(ranges[0].last == kMsiFirst - 1);
  CHECK(ranges[1].start == kMsiLast + 1);
  CHECK(ranges[1].last == (u64{1} << 48) - 1);
  REQUIRE(detach(h, b.dev) == 0);
  ranges = iova_ranges(h, b.iommufd, b.ioas, &alignment);
  CHECK(ranges.size() == 1);
  CHECK(alignment == 1);
}

TEST_CASE("iommufd: ALLOW_IOVAS errors and effect", "[iommufd][ranges]") {
  Harness h;
  const int fd = h.open("iommu");
  const u32 ioas = ioas_alloc(h, fd);
  iommu_iova_range r[3] = {{0x10000, 0x1ffff}, {0x40000, 0x4ffff}, {0, 0}};
  iommu_ioas_allow_iovas a{};
  a.size = sizeof(a);
  a.ioas_id = ioas;
  a.num_iovas = 2;
  a.allowed_iovas = reinterpret_cast<u64>(r);
  a.__reserved = 1;
  CHECK(h.fails(fd, IOMMU_IOAS_ALLOW_IOVAS, &a) == EOPNOTSUPP);
  a.__reserved = 0;
  a.ioas_id = 77;
  CHECK(h.fails(fd, IOMMU_IOAS_ALLOW_IOVAS, &a) == ENOENT);
  a.ioas_id = ioas;
  a.allowed_iovas = 0x10;
  CHECK(h.fails(fd, IOMMU_IOAS_ALLOW_IOVAS, &a) == EFAULT);
  a.allowed_iovas = reinterpret_cast<u64>(r);
  r[1] = {0x40000, 0x40000};  // start == last: a one-byte range is refused
  CHECK(h.fails(fd, IOMMU_IOAS_ALLOW_IOVAS, &a) == EINVAL);
  r[1] = {0x1f000, 0x2ffff};  // overlaps r[0]
  CHECK(h.fails(fd, IOMMU_IOAS_ALLOW_IOVAS, &a) == EINVAL);
  r[1] = {0x40000, 0x4ffff};
  // A bad range before a fault wins; a fault before a bad range wins.
  {
    Buffer two(2 * K4);
    REQUIRE(mprotect(reinterpret_cast<void*>(two.addr() + K4), K4, PROT_NONE) == 0);
    auto* at = reinterpret_cast<iommu_iova_range*>(two.addr() + K4 - sizeof(iommu_iova_range));
    *at = {5, 5};
    a.allowed_iovas = reinterpret_cast<u64>(at);
    CHECK(h.fails(fd, IOMMU_IOAS_ALLOW_IOVAS, &a) == EINVAL);
    *at = {5, 6};
    CHECK(h.fails(fd, IOMMU_IOAS_ALLOW_IOVAS, &a) == EFAULT);
    a.allowed_iovas = reinterpret_cast<u64>(r);
  }
  REQUIRE(h.ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &a) == 0);
  // Automatic IOVA now comes from the allowed ranges only; FIXED_IOVA is not limited by them.
  Buffer buf(4 * 0x10000);
  u64 iova = 0;
  REQUIRE(ioas_map(h, fd, ioas, buf.addr(), 0x10000, &iova, kRW) == 0);
  CHECK(iova == 0x10000);
  REQUIRE(ioas_map(h, fd, ioas, buf.addr(), 0x10000, &iova, kRW) == 0);
  CHECK(iova == 0x40000);
  CHECK(ioas_map(h, fd, ioas, buf.addr(), 0x10000, &iova, kRW) == ENOSPC);
  CHECK(ioas_map_at(h, fd, ioas, buf.addr(), 0x10000, 0x900000) == 0);
  // num_iovas = 0 clears the list.
  a.num_iovas = 0;
  REQUIRE(h.ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &a) == 0);
  CHECK(ioas_map(h, fd, ioas, buf.addr(), 0x10000, &iova, kRW) == 0);
  CHECK(iova == 0x20000);
}

TEST_CASE("iommufd: allowed IOVA and reserved regions exclude each other (EADDRINUSE)",
          "[iommufd][ranges]") {
  Harness h;
  Bound b(h, "vfio/devices/vfio0", false);
  iommu_iova_range msi[1] = {{0xfe000000, 0xfeffffff}};
  iommu_ioas_allow_iovas a{sizeof(a), b.ioas, 1, 0, reinterpret_cast<u64>(msi)};
  REQUIRE(h.ioctl(b.iommufd, IOMMU_IOAS_ALLOW_IOVAS, &a) == 0);
  CHECK(attach(h, b.dev, b.ioas) == EADDRINUSE);  // the MSI window is in an allowed range
  CHECK(domains(h).empty());                      // all-or-nothing
  a.num_iovas = 0;
  REQUIRE(h.ioctl(b.iommufd, IOMMU_IOAS_ALLOW_IOVAS, &a) == 0);
  REQUIRE(attach(h, b.dev, b.ioas) == 0);
  a.num_iovas = 1;
  CHECK(h.fails(b.iommufd, IOMMU_IOAS_ALLOW_IOVAS, &a) == EADDRINUSE);  // the old list stays
  msi[0] = {0x1000, 0xfedfffff};
  CHECK(h.ioctl(b.iommufd, IOMMU_IOAS_ALLOW_IOVAS, &a) == 0);
}

// ---- IOAS_MAP ----------------------------------------------------------------------------------

TEST_CASE("iommufd: IOAS_MAP errors in Linux's order", "[iommufd][map]") {
  Harness h;
  const int fd = h.open("iommu");
  const u32 ioas = ioas_alloc(h, fd);
  Buffer buf(M2);
  const u64 va = buf.addr();
  u64 iova = 0;
  CHECK(ioas_map(h, fd, ioas, va, K4, &iova, kRW | 0x8) == EOPNOTSUPP);  // unknown flag
  {
    iommu_ioas_map m{sizeof(m), kRW | kFixed, ioas, 1, va, K4, 0};  // __reserved
    CHECK(h.fails(fd, IOMMU_IOAS_MAP, &m) == EOPNOTSUPP);
  }
  // iova/length >= ULONG_MAX: EOVERFLOW, even without FIXED_IOVA (where iova is ignored).
  iova = kMax;
  CHECK(ioas_map(h, fd, ioas, va, K4, &iova, kRW) == EOVERFLOW);
  CHECK(ioas_map(h, fd, ioas, va, K4, &iova, 0x8) == EOPNOTSUPP);  // flags first
  iova = 0;
  CHECK(ioas_map(h, fd, ioas, va, kMax, &iova) == EOVERFLOW);
  CHECK(ioas_map(h, fd, ioas, va, kMax, &iova, kFixed) == EOVERFLOW);  // before the prot check
  CHECK(ioas_map(h, fd, ioas, va, K4, &iova, kFixed) == EINVAL);      // neither R nor W
  CHECK(ioas_map(h, fd, 99, va, K4, &iova, kFixed) == EINVAL);         // prot before the id
  CHECK(ioas_map(h, fd, 99, va, K4, &iova) == ENOENT);
  CHECK(ioas_map(h, fd, 99, va, 0, &iova) == ENOENT);                  // id before length
  CHECK(ioas_map(h, fd, ioas, kMax - K4, 2 * K4, &iova) == EOVERFLOW); // user_va + length wraps
  CHECK(ioas_map(h, fd, ioas, va, 0, &iova) == EINVAL);                // length 0
  CHECK(ioas_map(h, fd, ioas, 0, kMax - K4 + 1, &iova) == EINVAL);     // > SIZE_MAX - PAGE_SIZE
  CHECK(ioas_map(h, fd, ioas, 2 * K4, kMax - K4 + 1, &iova) == EOVERFLOW);  // the wrap first
  iova = kMax - K4 + 1;
  CHECK(ioas_map(h, fd, ioas, va, 2 * K4, &iova) == EOVERFLOW);        // iova + length - 1 wraps
  iova = 0x1000;
  REQUIRE(ioas_map(h, fd, ioas, va, 2 * K4, &iova) == 0);
  CHECK(ioas_map_at(h, fd, ioas, va, K4, 0x2000) == EEXIST);
  CHECK(ioas_map_at(h, fd, ioas, va, 2 * K4, 0) == EEXIST);
  // Without a domain the alignment is 1: any byte IOVA and user_va.
  CHECK(ioas_map_at(h, fd, ioas, va + 3, 5, 0x10001) == 0);
  CHECK(ioas_map_at(h, fd, ioas, va, 1, 0x10006) == 0);
  CHECK(ioas_map_at(h, fd, ioas, va, 1, 0x10005) == EEXIST);
}

TEST_CASE("iommufd: FIXED_IOVA with a domain: alignment and reserved IOVA", "[iommufd][map]") {
  Harness h;
  Bound b(h);
  Buffer buf(M2);
  const u64 va = buf.addr();
  CHECK(ioas_map_at(h, b.iommufd, b.ioas, va, K4, 0x800) == EINVAL);        // iova misaligned
  CHECK(ioas_map_at(h, b.iommufd, b.ioas, va, 0x800, 0x1000) == EINVAL);    // length misaligned
  CHECK(ioas_map_at(h, b.iommufd, b.ioas, va + 8, K4, 0x1000) == EINVAL);   // page offset
  CHECK(ioas_map_at(h, b.iommufd, b.ioas, va, K4, kMsiFirst) == EINVAL);    // MSI window
  CHECK(ioas_map_at(h, b.iommufd, b.ioas, va, 2 * K4, kMsiFirst - K4) == EINVAL);
  CHECK(ioas_map_at(h, b.iommufd, b.ioas, va, K4, u64{1} << 48) == EINVAL);  // outside aperture
  CHECK(ioas_map_at(h, b.iommufd, b.ioas, va, K4, (u64{1} << 48) - K4) == 0);
  // Kernel-chosen IOVA with a user_va below the IOAS alignment: EINVAL.
  u64 iova = 0;
  CHECK(ioas_map(h, b.iommufd, b.ioas, va + 0x10, K4, &iova, kRW) == EINVAL);
}

TEST_CASE("iommufd: kernel-chosen IOVA: never 0, first fit, the user VA's alignment",
          "[iommufd][map]") {
  Harness h;
  const int fd = h.open("iommu");
  const u32 ioas = ioas_alloc(h, fd);
  Buffer buf(8 * M2);
  const u64 va = buf.addr();  // 2 MiB aligned
  u64 iova = 0;
  REQUIRE(ioas_map(h, fd, ioas, va, K4, &iova, kRW) == 0);
  CHECK(iova == K4);  // 0 is never returned
  REQUIRE(ioas_map(h, fd, ioas, va, K4, &iova, kRW) == 0);
  CHECK(iova == 2 * K4);  // first fit
  REQUIRE(ioas_map(h, fd, ioas, va, M2, &iova, kRW) == 0);
  CHECK(iova == M2);  // min(roundup_pow_of_two(length), the user VA's alignment) = 2 MiB
  REQUIRE(ioas_map(h, fd, ioas, va + K4, 3 * K4, &iova, kRW) == 0);
  CHECK(iova == 3 * K4);  // alignment min(16K, the VA's 4K) = 4K: the first hole, at 0x3000
  REQUIRE(ioas_map(h, fd, ioas, va + 0x123, 0x10, &iova, kRW) == 0);
  CHECK(iova % K4 == 0x123);  // the page offset of user_va is kept
  CHECK(iova == 0x6123);      // alignment 1: the next hole starts at 0x6000
  // Unmapping opens the hole again.
  REQUIRE(ioas_unmap(h, fd, ioas, K4, K4) == 0);
  REQUIRE(ioas_map(h, fd, ioas, va, K4, &iova, kRW) == 0);
  CHECK(iova == K4);
  // Lengths of ULONG_MAX/2 and more overflow roundup_pow_of_two.
  CHECK(ioas_map(h, fd, ioas, 0, kMax / 2, &iova, kRW) == EOVERFLOW);
  CHECK(ioas_map(h, fd, ioas, 0, kMax / 2 - 1, &iova, kRW) == 0);
  CHECK(ioas_map(h, fd, ioas, 0, kMax / 2 - 1, &iova, kRW) == ENOSPC);
}

// ---- IOAS_UNMAP --------------------------------------------------------------------------------

TEST_CASE("iommufd: IOAS_UNMAP: unmap-all, ENOENT for empty or bisect, not atomic",
          "[iommufd][unmap]") {
  Harness h;
  const int fd = h.open("iommu");
  const u32 ioas = ioas_alloc(h, fd);
  Buffer buf(M2);
  u64 n = 7;
  CHECK(ioas_unmap(h, fd, 77, 0, kMax, &n) == ENOENT);
  CHECK(ioas_unmap(h, fd, 77, kMax, K4, &n) == ENOENT);  // the id first
  REQUIRE(ioas_unmap(h, fd, ioas, 0, kMax, &n) == 0);    // empty: success
  CHECK(n == 0);
  n = 7;
  CHECK(ioas_unmap(h, fd, ioas, 0x1000, K4, &n) == ENOENT);  // nothing there
  CHECK(n == K4);                                            // length not written back
  CHECK(ioas_unmap(h, fd, ioas, kMax, K4) == EOVERFLOW);
  CHECK(ioas_unmap(h, fd, ioas, K4, kMax) == EOVERFLOW);  // U64_MAX only with iova 0
  CHECK(ioas_unmap(h, fd, ioas, K4, 0) == EINVAL);
  CHECK(ioas_unmap(h, fd, ioas, kMax - K4, 2 * K4) == EOVERFLOW);

  for (u64 at : {0x10000, 0x20000, 0x30000})
    REQUIRE(ioas_map_at(h, fd, ioas, buf.addr(), 0x10000, at) == 0);
  CHECK(ioas_unmap(h, fd, ioas, 0x10000, 0x18000) == ENOENT);  // bisects 0x20000
  // Not atomic: the first mapping is already gone.
  CHECK(ioas_unmap(h, fd, ioas, 0x10000, 0x10000) == ENOENT);
  CHECK(ioas_unmap(h, fd, ioas, 0x21000, K4) == ENOENT);  // inside a mapping
  CHECK(ioas_unmap(h, fd, ioas, 0x18000, 0x20000) == ENOENT);  // 0x30000 sticks out...
  REQUIRE(ioas_unmap(h, fd, ioas, 0, kMax, &n) == 0);  // ...after 0x20000 went
  CHECK(n == 0x10000);
}

// ---- §6 the full 64-bit range ------------------------------------------------------------------

TEST_CASE("iommufd: the last page of the 64-bit space can be mapped and unmapped",
          "[iommufd][range64]") {
  Harness h;
  const int fd = h.open("iommu");
  const u32 ioas = ioas_alloc(h, fd);
  Buffer buf(K4);
  const u64 last_page = kMax - K4 + 1;  // 2^64 - 4096
  REQUIRE(ioas_map_at(h, fd, ioas, buf.addr(), K4, last_page) == 0);
  u64 n = 0;
  REQUIRE(ioas_unmap(h, fd, ioas, last_page, K4, &n) == 0);
  CHECK(n == K4);
  REQUIRE(ioas_map_at(h, fd, ioas, buf.addr(), K4, last_page) == 0);
  REQUIRE(ioas_map_at(h, fd, ioas, buf.addr(), K4, 0) == 0);  // IOVA 0 with FIXED_IOVA
  REQUIRE(ioas_unmap(h, fd, ioas, 0, kMax, &n) == 0);         // unmap all
  CHECK(n == 2 * K4);
  // iova = ~0 & ~(pg-1), two pages: EOVERFLOW for map and unmap.
  CHECK(ioas_map_at(h, fd, ioas, buf.addr(), 2 * K4, last_page) == EOVERFLOW);
  CHECK(ioas_unmap(h, fd, ioas, last_page, 2 * K4) == EOVERFLOW);
  // A mapping of the whole space but one page, in two halves, and unmap-all of it.
  REQUIRE(ioas_map_at(h, fd, ioas, 0, u64{1} << 63, 0) == 0);
  REQUIRE(ioas_map_at(h, fd, ioas, 0, (u64{1} << 63) - K4, u64{1} << 63) == 0);
  REQUIRE(ioas_unmap(h, fd, ioas, 0, kMax, &n) == 0);
  CHECK(n == kMax - K4 + 1);
}

// ---- IOAS_COPY ---------------------------------------------------------------------------------

TEST_CASE("iommufd: IOAS_COPY errors and shared pages", "[iommufd][copy]") {
  Harness h;
  const int fd = h.open("iommu");
  const u32 src = ioas_alloc(h, fd);
  const u32 dst = ioas_alloc(h, fd);
  Buffer buf(4 * K4);
  REQUIRE(ioas_map_at(h, fd, src, buf.addr(), 2 * K4, 0x10000) == 0);
  REQUIRE(ioas_map_at(h, fd, src, buf.addr() + 2 * K4, 2 * K4, 0x12000) == 0);
  auto copy = [&](u32 flags, u32 d, u32 s, u64 len, u64 dst_iova, u64 src_iova, u64* out) {
    iommu_ioas_copy c{sizeof(c), flags, d, s, len, dst_iova, src_iova};
    const int e = h.fails(fd, IOMMU_IOAS_COPY, &c);
    if (out) *out = c.dst_iova;
    return e;
  };
  u64 out = 0;
  CHECK(copy(kRW | 0x10, dst, src, K4, 0, 0x10000, &out) == EOPNOTSUPP);
  CHECK(copy(kRW, dst, src, kMax, 0, 0x10000, &out) == EOVERFLOW);
  CHECK(copy(kRW, dst, src, K4, kMax, 0x10000, &out) == EOVERFLOW);
  CHECK(copy(kRW, dst, src, K4, 0, kMax, &out) == EOVERFLOW);
  CHECK(copy(kFixed, dst, src, K4, 0, 0x10000, &out) == EINVAL);
  CHECK(copy(kRW, dst, 99, K4, 0, 0x10000, &out) == ENOENT);
  CHECK(copy(kRW, dst, src, 0, 0, 0x10000, &out) == EINVAL);
  CHECK(copy(kRW, dst, src, 2 * K4, 0, kMax - K4, &out) == EOVERFLOW);
  CHECK(copy(kRW, dst, src, K4, 0, 0x20000, &out) == ENOENT);       // nothing mapped
  CHECK(copy(kRW, dst, src, 5 * K4, 0, 0x10000, &out) == ENOENT);   // runs off the end
  CHECK(copy(kRW, 99, src, K4, 0, 0x10000, &out) == ENOENT);        // dst after src
  // Any contiguously covered sub-range, across two mappings (looser than the header says).
  REQUIRE(copy(kRW | kFixed, dst, src, 2 * K4, 0x5000, 0x11000, &out) == 0);
  CHECK(out == 0x5000);
  CHECK(copy(kRW | kFixed, dst, src, K4, 0x6000, 0x10000, &out) == EEXIST);
  REQUIRE(copy(kRW, dst, src, K4, 0, 0x10000, &out) == 0);
  CHECK(out == K4);  // kernel-chosen: the source pages' VA is the alignment hint
  u64 n = 0;
  REQUIRE(ioas_unmap(h, fd, dst, 0x5000, 2 * K4, &n) == 0);  // two areas, one per source
  CHECK(n == 2 * K4);
}

TEST_CASE("iommufd: copied pages are pinned and charged once", "[iommufd][copy][locked]") {
  Harness h;
  const int fd = h.open("iommu");
  const int d0 = h.open("vfio/devices/vfio0");
  const int d1 = h.open("vfio/devices/vfio1");
  REQUIRE(bind(h, d0, fd) == 0);
  REQUIRE(bind(h, d1, fd) == 0);
  const u32 a = ioas_alloc(h, fd);
  const u32 b = ioas_alloc(h, fd);
  REQUIRE(attach(h, d0, a) == 0);
  REQUIRE(attach(h, d1, b) == 0);
  Buffer buf(4 * K4);
  REQUIRE(ioas_map_at(h, fd, a, buf.addr(), 4 * K4, 0x100000) == 0);
  CHECK(user_locked(h) == 4 * K4);
  iommu_ioas_copy c{sizeof(c), kRW | kFixed, b, a, 4 * K4, 0x200000, 0x100000};
  REQUIRE(h.ioctl(fd, IOMMU_IOAS_COPY, &c) == 0);
  CHECK(user_locked(h) == 4 * K4);
  REQUIRE(ioas_unmap(h, fd, a, 0, kMax) == 0);
  CHECK(user_locked(h) == 4 * K4);  // still pinned for b
  for (auto& d : domains(h)) {
    auto t = d->hw->translate(0x200000 + 0x10, iommu::Access::kWrite);
    if (d->hw->stats().entries == 0) continue;
    REQUIRE(t.ok());
    CHECK(t.output == buf.addr() + 0x10);
  }
  REQUIRE(ioas_unmap(h, fd, b, 0, kMax) == 0);
  CHECK(user_locked(h) == 0);
}

// ---- IOMMU_OPTION ------------------------------------------------------------------------------

TEST_CASE("iommufd: IOMMU_OPTION RLIMIT_MODE and HUGE_PAGES", "[iommufd][option]") {
  Harness h;
  const int fd = h.open("iommu");
  iommu_option o{};
  o.size = sizeof(o);
  auto opt = [&](u32 id, u16 op, u32 obj, u64 val) {
    o.option_id = id;
    o.op = op;
    o.object_id = obj;
    o.val64 = val;
    return h.fails(fd, IOMMU_OPTION, &o);
  };
  o.__reserved = 1;
  CHECK(opt(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, 0) == EOPNOTSUPP);
  o.__reserved = 0;
  CHECK(opt(7, IOMMU_OPTION_OP_GET, 0, 0) == EOPNOTSUPP);
  CHECK(opt(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 1, 0) == EOPNOTSUPP);  // object_id
  REQUIRE(opt(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, 9) == 0);
  CHECK(o.val64 == 0);  // per-user accounting by default
  CHECK(opt(IOMMU_OPTION_RLIMIT_MODE, 2, 0, 0) == EOPNOTSUPP);
  CHECK(opt(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 1) == EPERM);
  h.capabilities.insert(CAP_SYS_RESOURCE);
  CHECK(opt(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 2) == EINVAL);
  REQUIRE(opt(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 1) == 0);
  REQUIRE(opt(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, 0) == 0);
  CHECK(o.val64 == 1);
  const u32 ioas = ioas_alloc(h, fd);
  CHECK(opt(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 0) == EBUSY);  // objects exist

  CHECK(opt(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, 99, 0) == ENOENT);
  REQUIRE(opt(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas, 0) == 0);
  CHECK(o.val64 == 1);
  CHECK(opt(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, 2) == EINVAL);
  CHECK(opt(IOMMU_OPTION_HUGE_PAGES, 5, ioas, 0) == EOPNOTSUPP);
  Buffer buf(M2);
  REQUIRE(ioas_map_at(h, fd, ioas, buf.addr() + 1, 7, 0x1001) == 0);  // byte granular
  CHECK(opt(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, 0) == EADDRINUSE);
  REQUIRE(ioas_unmap(h, fd, ioas, 0, kMax) == 0);
  REQUIRE(opt(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, 0) == 0);
  u64 alignment = 0;
  iova_ranges(h, fd, ioas, &alignment);
  CHECK(alignment == K4);  // PAGE_SIZE when large pages are off
  REQUIRE(opt(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas, 1) == 0);
  CHECK(o.val64 == 0);
  REQUIRE(opt(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, 1) == 0);
  iova_ranges(h, fd, ioas, &alignment);
  CHECK(alignment == 1);
}

TEST_CASE("iommufd: HUGE_PAGES off maps 4 KiB pages; it cannot be turned off with mappings",
          "[iommufd][option]") {
  Harness h;
  Bound b(h, "vfio/devices/vfio0", false);
  iommu_option o{sizeof(o), IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, 0, b.ioas, 0};
  REQUIRE(h.ioctl(b.iommufd, IOMMU_OPTION, &o) == 0);
  REQUIRE(attach(h, b.dev, b.ioas) == 0);
  Buffer buf(M2);
  REQUIRE(ioas_map_at(h, b.iommufd, b.ioas, buf.addr(), M2, 0x40000000) == 0);
  CHECK(translate(h, 0x40000000).page_size == K4);
  o.val64 = 1;
  REQUIRE(h.ioctl(b.iommufd, IOMMU_OPTION, &o) == 0);
  REQUIRE(ioas_map_at(h, b.iommufd, b.ioas, buf.addr(), M2, 0x80000000) == 0);
  CHECK(translate(h, 0x80000000).page_size == M2);
  o.val64 = 0;
  CHECK(h.fails(b.iommufd, IOMMU_OPTION, &o) == EINVAL);  // domains already have mappings
}

// ---- IOMMU_VFIO_IOAS ---------------------------------------------------------------------------

TEST_CASE("iommufd: IOMMU_VFIO_IOAS GET/SET/CLEAR", "[iommufd][compat]") {
  Harness h;
  const int fd = h.open("iommu");
  iommu_vfio_ioas v{sizeof(v), 0, IOMMU_VFIO_IOAS_GET, 0};
  CHECK(h.fails(fd, IOMMU_VFIO_IOAS, &v) == ENODEV);
  v.__reserved = 1;
  CHECK(h.fails(fd, IOMMU_VFIO_IOAS, &v) == EOPNOTSUPP);
  v.__reserved = 0;
  v.op = 3;
  CHECK(h.fails(fd, IOMMU_VFIO_IOAS, &v) == EOPNOTSUPP);
  v.op = IOMMU_VFIO_IOAS_SET;
  v.ioas_id = 5;
  CHECK(h.fails(fd, IOMMU_VFIO_IOAS, &v) == ENOENT);
  const u32 ioas = ioas_alloc(h, fd);
  v.ioas_id = ioas;
  REQUIRE(h.ioctl(fd, IOMMU_VFIO_IOAS, &v) == 0);
  v = {sizeof(v), 0, IOMMU_VFIO_IOAS_GET, 0};
  REQUIRE(h.ioctl(fd, IOMMU_VFIO_IOAS, &v) == 0);
  CHECK(v.ioas_id == ioas);
  v.op = IOMMU_VFIO_IOAS_CLEAR;
  REQUIRE(h.ioctl(fd, IOMMU_VFIO_IOAS, &v) == 0);
  v.op = IOMMU_VFIO_IOAS_GET;
  CHECK(h.fails(fd, IOMMU_VFIO_IOAS, &v) == ENODEV);
  // Destroying the compat IOAS clears it.
  v = {sizeof(v), ioas, IOMMU_VFIO_IOAS_SET, 0};
  REQUIRE(h.ioctl(fd, IOMMU_VFIO_IOAS, &v) == 0);
  REQUIRE(destroy(h, fd, ioas) == 0);
  v.op = IOMMU_VFIO_IOAS_GET;
  CHECK(h.fails(fd, IOMMU_VFIO_IOAS, &v) == ENODEV);
}

// ---- HWPT_ALLOC --------------------------------------------------------------------------------

TEST_CASE("iommufd: HWPT_ALLOC errors in Linux's order", "[iommufd][hwpt]") {
  Harness h;
  Bound b(h, "vfio/devices/vfio0", false);
  iommu_hwpt_alloc a{};
  auto alloc = [&](u32 flags, u32 dev, u32 pt, u32 type = IOMMU_HWPT_DATA_NONE, u32 len = 0,
                   u64 uptr = 0) {
    a = {};
    a.size = sizeof(a);
    a.flags = flags;
    a.dev_id = dev;
    a.pt_id = pt;
    a.data_type = type;
    a.data_len = len;
    a.data_uptr = uptr;
    return h.fails(b.iommufd, IOMMU_HWPT_ALLOC, &a);
  };
  {
    iommu_hwpt_alloc r{};
    r.size = sizeof(r);
    r.dev_id = b.devid;
    r.pt_id = b.ioas;
    r.__reserved = 1;
    CHECK(h.fails(b.iommufd, IOMMU_HWPT_ALLOC, &r) == EOPNOTSUPP);
  }
  iommu_hwpt_vtd_s1 s1{};
  const u64 s1p = reinterpret_cast<u64>(&s1);
  CHECK(alloc(0, b.devid, b.ioas, IOMMU_HWPT_DATA_NONE, 8, s1p) == EINVAL);
  CHECK(alloc(0, b.devid, b.ioas, IOMMU_HWPT_DATA_VTD_S1, 0) == EINVAL);
  CHECK(alloc(0, 99, b.ioas) == ENOENT);                 // bad device
  CHECK(alloc(0, b.ioas, b.ioas) == ENOENT);             // not a device
  CHECK(alloc(0, b.devid, 99) == EINVAL);                // bad pt: EINVAL, not ENOENT
  CHECK(alloc(0, b.devid, b.devid) == EINVAL);           // neither IOAS nor HWPT
  CHECK(alloc(0x100, b.devid, b.ioas) == EOPNOTSUPP);    // unknown flag
  CHECK(alloc(IOMMU_HWPT_ALLOC_DIRTY_TRACKING, b.devid, b.ioas) == EOPNOTSUPP);
  CHECK(alloc(IOMMU_HWPT_ALLOC_NEST_PARENT, b.devid, b.ioas) == EOPNOTSUPP);
  CHECK(alloc(0, b.devid, b.ioas, IOMMU_HWPT_DATA_VTD_S1, sizeof(s1), s1p) == EOPNOTSUPP);
  CHECK(alloc(IOMMU_HWPT_FAULT_ID_VALID, b.devid, b.ioas) == ENOENT);  // no fault objects
  CHECK(domains(h).empty());
  REQUIRE(alloc(0, b.devid, b.ioas) == 0);
  const u32 hwpt = a.out_hwpt_id;
  CHECK(hwpt == b.ioas + 1);
  CHECK(domains(h).size() == 1);
  // A nested HWPT on it: no data is EOPNOTSUPP, and it is no nesting parent.
  CHECK(alloc(0, b.devid, hwpt) == EOPNOTSUPP);
  CHECK(alloc(0, b.devid, hwpt, IOMMU_HWPT_DATA_VTD_S1, sizeof(s1), s1p) == EINVAL);
  // PASID-compatible paging domains are fine on VT-d.
  REQUIRE(alloc(IOMMU_HWPT_ALLOC_PASID, b.devid, b.ioas) == 0);
  CHECK(destroy(h, b.iommufd, a.out_hwpt_id) == 0);
  CHECK(destroy(h, b.iommufd, b.ioas) == EBUSY);  // the first HWPT holds it
  CHECK(destroy(h, b.iommufd, hwpt) == 0);
  CHECK(domains(h).empty());
  CHECK(destroy(h, b.iommufd, b.ioas) == 0);
}

TEST_CASE("iommufd: HWPT_ALLOC for TCE and nop devices", "[iommufd][hwpt]") {
  Harness h;
  Bound tce(h, "vfio/devices/vfio2", false);
  iommu_hwpt_alloc a{};
  a.size = sizeof(a);
  a.dev_id = tce.devid;
  a.pt_id = tce.ioas;
  CHECK(h.fails(tce.iommufd, IOMMU_HWPT_ALLOC, &a) == EOPNOTSUPP);  // no paging domains
  a.flags = IOMMU_HWPT_ALLOC_PASID;
  CHECK(h.fails(tce.iommufd, IOMMU_HWPT_ALLOC, &a) == EOPNOTSUPP);
  const int nop = h.open("vfio/devices/vfio3");
  u32 nop_id = 0;
  REQUIRE(bind(h, nop, tce.iommufd, &nop_id) == 0);
  a.flags = 0;
  a.dev_id = nop_id;
  CHECK(h.fails(tce.iommufd, IOMMU_HWPT_ALLOC, &a) == ENODEV);  // no IOMMU at all
  CHECK(domains(h).empty());
}

TEST_CASE("iommufd: a HWPT from HWPT_ALLOC is filled with the IOAS and can be attached",
          "[iommufd][hwpt]") {
  Harness h;
  Bound b(h, "vfio/devices/vfio0", false);
  Buffer buf(2 * K4);
  REQUIRE(ioas_map_at(h, b.iommufd, b.ioas, buf.addr(), 2 * K4, 0x100000) == 0);
  CHECK(user_locked(h) == 0);  // no domain: nothing pinned
  iommu_hwpt_alloc a{};
  a.size = sizeof(a);
  a.dev_id = b.devid;
  a.pt_id = b.ioas;
  REQUIRE(h.ioctl(b.iommufd, IOMMU_HWPT_ALLOC, &a) == 0);
  CHECK(user_locked(h) == 2 * K4);
  auto t = translate(h, 0x101008, iommu::Access::kWrite);
  REQUIRE(t.ok());
  CHECK(t.output == buf.addr() + K4 + 8);
  u32 got = 0;
  REQUIRE(attach(h, b.dev, a.out_hwpt_id, &got) == 0);
  CHECK(got == a.out_hwpt_id);
  CHECK(destroy(h, b.iommufd, a.out_hwpt_id) == EBUSY);
  // An IOAS attach does not pick a user-allocated HWPT: a new automatic one.
  REQUIRE(attach(h, b.dev, b.ioas, &got) == 0);
  CHECK(got != a.out_hwpt_id);
  CHECK(domains(h).size() == 2);
  REQUIRE(detach(h, b.dev) == 0);
  CHECK(domains(h).size() == 1);  // the automatic one went with its device
  REQUIRE(destroy(h, b.iommufd, a.out_hwpt_id) == 0);
  CHECK(domains(h).empty());
  CHECK(user_locked(h) == 0);
}

// ---- GET_HW_INFO -------------------------------------------------------------------------------

TEST_CASE("iommufd: GET_HW_INFO reports the VT-d registers", "[iommufd][hwinfo]") {
  Harness h;
  Bound b(h, "vfio/devices/vfio0", false);
  const auto& unit = static_cast<const iommu::vtd::VtdUnit&>(
      *h.emu.device_by_cdev(0)->group().unit());
  struct {
    iommu_hw_info_vtd vtd;
    u8 more[16];
  } data;
  std::memset(&data, 0xaa, sizeof(data));
  iommu_hw_info info{};
  info.size = sizeof(info);
  info.dev_id = b.devid;
  info.data_len = sizeof(data);
  info.data_uptr = reinterpret_cast<u64>(&data);
  info.out_capabilities = 0xff;
  REQUIRE(h.ioctl(b.iommufd, IOMMU_GET_HW_INFO, &info) == 0);
  CHECK(info.out_data_type == IOMMU_HW_INFO_TYPE_INTEL_VTD);
  CHECK(info.data_len == sizeof(iommu_hw_info_vtd));
  CHECK(data.vtd.cap_reg == unit.cap_reg());
  CHECK(data.vtd.ecap_reg == unit.ecap_reg());
  CHECK(data.vtd.flags == 0);
  CHECK(data.more[15] == 0);  // the rest of the caller's buffer is cleared
  CHECK(info.out_capabilities == IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);  // no model has ATS
  CHECK(info.out_max_pasid_log2 == 0);
  // A short buffer gets what fits; data_len says how much there is.
  u64 small = 0x5555555555555555;
  info.data_len = 8;
  info.data_uptr = reinterpret_cast<u64>(&small);
  REQUIRE(h.ioctl(b.iommufd, IOMMU_GET_HW_INFO, &info) == 0);
  CHECK(info.data_len == 24);
  CHECK(small == 0);  // flags and __reserved of iommu_hw_info_vtd
  // Requesting a type.
  info.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
  info.in_data_type = IOMMU_HW_INFO_TYPE_INTEL_VTD;
  info.data_len = 0;
  CHECK(h.ioctl(b.iommufd, IOMMU_GET_HW_INFO, &info) == 0);
  info.in_data_type = IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
  CHECK(h.fails(b.iommufd, IOMMU_GET_HW_INFO, &info) == EOPNOTSUPP);
  // A random input type is ignored without the flag.
  info.flags = 0;
  REQUIRE(h.ioctl(b.iommufd, IOMMU_GET_HW_INFO, &info) == 0);
  CHECK(info.out_data_type == IOMMU_HW_INFO_TYPE_INTEL_VTD);
  // Errors.
  info.flags = 2;
  CHECK(h.fails(b.iommufd, IOMMU_GET_HW_INFO, &info) == EOPNOTSUPP);
  info.flags = 0;
  info.__reserved[1] = 1;
  CHECK(h.fails(b.iommufd, IOMMU_GET_HW_INFO, &info) == EOPNOTSUPP);
  info.__reserved[1] = 0;
  info.dev_id = b.ioas;
  CHECK(h.fails(b.iommufd, IOMMU_GET_HW_INFO, &info) == ENOENT);
  info.dev_id = b.devid;
  info.data_len = 24;
  info.data_uptr = 0x10;
  CHECK(h.fails(b.iommufd, IOMMU_GET_HW_INFO, &info) == EFAULT);
}

TEST_CASE("iommufd: GET_HW_INFO of TCE and nop devices is TYPE_NONE", "[iommufd][hwinfo]") {
  Harness h;
  const int fd = h.open("iommu");
  for (const char* cdev : {"vfio/devices/vfio2", "vfio/devices/vfio3"}) {
    const int d = h.open(cdev);
    u32 devid = 0;
    REQUIRE(bind(h, d, fd, &devid) == 0);
    u8 data[8];
    std::memset(data, 0xaa, sizeof(data));
    iommu_hw_info info{};
    info.size = sizeof(info);
    info.dev_id = devid;
    info.data_len = sizeof(data);
    info.data_uptr = reinterpret_cast<u64>(data);
    info.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
    info.in_data_type = IOMMU_HW_INFO_TYPE_INTEL_VTD;  // no hw_info op: ignored
    INFO(cdev);
    REQUIRE(h.ioctl(fd, IOMMU_GET_HW_INFO, &info) == 0);
    CHECK(info.out_data_type == IOMMU_HW_INFO_TYPE_NONE);
    CHECK(info.data_len == 0);
    CHECK(data[7] == 0);
  }
}

// ---- commands the emulator only refuses --------------------------------------------------------

TEST_CASE("iommufd: dirty tracking, invalidation, fault queues, vIOMMUs, MAP_FILE",
          "[iommufd][misc]") {
  Harness h;
  Bound b(h);
  iommu_hwpt_set_dirty_tracking sd{sizeof(sd), 2, b.hwpt, 0};
  CHECK(h.fails(b.iommufd, IOMMU_HWPT_SET_DIRTY_TRACKING, &sd) == EOPNOTSUPP);
  sd = {sizeof(sd), IOMMU_HWPT_DIRTY_TRACKING_ENABLE, b.ioas, 0};
  CHECK(h.fails(b.iommufd, IOMMU_HWPT_SET_DIRTY_TRACKING, &sd) == ENOENT);
  sd.hwpt_id = b.hwpt;
  CHECK(h.fails(b.iommufd, IOMMU_HWPT_SET_DIRTY_TRACKING, &sd) == EOPNOTSUPP);

  iommu_hwpt_get_dirty_bitmap gd{sizeof(gd), b.hwpt, 0, 0, 0x1000, 0x1000, K4, 0};
  gd.flags = 2;
  CHECK(h.fails(b.iommufd, IOMMU_HWPT_GET_DIRTY_BITMAP, &gd) == EOPNOTSUPP);
  gd.flags = 0;
  gd.hwpt_id = 99;
  CHECK(h.fails(b.iommufd, IOMMU_HWPT_GET_DIRTY_BITMAP, &gd) == ENOENT);
  gd.hwpt_id = b.hwpt;
  gd.iova = 0x800;
  CHECK(h.fails(b.iommufd, IOMMU_HWPT_GET_DIRTY_BITMAP, &gd) == EINVAL);
  gd.iova = kMax - K4 + 1;
  gd.length = 2 * K4;
  CHECK(h.fails(b.iommufd, IOMMU_HWPT_GET_DIRTY_BITMAP, &gd) == EOVERFLOW);
  gd.iova = 0x1000;
  gd.length = 0x1000;
  gd.page_size = 0;
  CHECK(h.fails(b.iommufd, IOMMU_HWPT_GET_DIRTY_BITMAP, &gd) == EINVAL);
  gd.page_size = K4;
  CHECK(h.fails(b.iommufd, IOMMU_HWPT_GET_DIRTY_BITMAP, &gd) == EOPNOTSUPP);

  iommu_hwpt_invalidate inv{sizeof(inv), b.hwpt, 0, 0, 16, 3, 0};
  CHECK(h.fails(b.iommufd, IOMMU_HWPT_INVALIDATE, &inv) == EINVAL);  // entries without data
  CHECK(inv.entry_num == 0);                                         // written back anyway
  inv.entry_num = 0;
  CHECK(h.fails(b.iommufd, IOMMU_HWPT_INVALIDATE, &inv) == EINVAL);  // a paging HWPT
  inv.hwpt_id = 99;
  CHECK(h.fails(b.iommufd, IOMMU_HWPT_INVALIDATE, &inv) == ENOENT);
  inv.__reserved = 1;
  inv.entry_num = 5;
  CHECK(h.fails(b.iommufd, IOMMU_HWPT_INVALIDATE, &inv) == EOPNOTSUPP);
  CHECK(inv.entry_num == 0);

  iommu_fault_alloc fa{sizeof(fa), 1, 0, 0};
  CHECK(h.fails(b.iommufd, IOMMU_FAULT_QUEUE_ALLOC, &fa) == EOPNOTSUPP);

  iommu_viommu_alloc va{};
  va.size = sizeof(va);
  va.type = IOMMU_VIOMMU_TYPE_DEFAULT;
  va.dev_id = b.devid;
  CHECK(h.fails(b.iommufd, IOMMU_VIOMMU_ALLOC, &va) == EOPNOTSUPP);
  va.type = IOMMU_VIOMMU_TYPE_ARM_SMMUV3;
  va.dev_id = 99;
  CHECK(h.fails(b.iommufd, IOMMU_VIOMMU_ALLOC, &va) == ENOENT);
  va.dev_id = b.devid;
  CHECK(h.fails(b.iommufd, IOMMU_VIOMMU_ALLOC, &va) == EOPNOTSUPP);
  iommu_vdevice_alloc vd{sizeof(vd), 1, b.devid, 0, 0};
  CHECK(h.fails(b.iommufd, IOMMU_VDEVICE_ALLOC, &vd) == ENOENT);
  iommu_veventq_alloc vq{sizeof(vq), 0, 1, IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, 0, 0, 0, 0};
  CHECK(h.fails(b.iommufd, IOMMU_VEVENTQ_ALLOC, &vq) == EINVAL);  // depth 0
  vq.veventq_depth = 4;
  CHECK(h.fails(b.iommufd, IOMMU_VEVENTQ_ALLOC, &vq) == ENOENT);
  iommu_hw_queue_alloc hq{sizeof(hq), 0, 1, IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, 0, 0, 0, 0};
  CHECK(h.fails(b.iommufd, IOMMU_HW_QUEUE_ALLOC, &hq) == EINVAL);  // length 0
  hq.length = K4;
  CHECK(h.fails(b.iommufd, IOMMU_HW_QUEUE_ALLOC, &hq) == ENOENT);

  iommu_ioas_map_file mf{sizeof(mf), kRW, b.ioas, -1, 0, K4, 0};
  CHECK(h.fails(b.iommufd, IOMMU_IOAS_MAP_FILE, &mf) == EBADF);
  mf.fd = h.foreign_fd();
  CHECK(h.fails(b.iommufd, IOMMU_IOAS_MAP_FILE, &mf) == EOPNOTSUPP);
  mf.length = kMax;
  CHECK(h.fails(b.iommufd, IOMMU_IOAS_MAP_FILE, &mf) == EOVERFLOW);

  iommu_ioas_change_process cp{sizeof(cp), 0};
  CHECK(h.ioctl(b.iommufd, IOMMU_IOAS_CHANGE_PROCESS, &cp) == 0);  // nothing mapped
  Buffer buf(K4);
  REQUIRE(ioas_map_at(h, b.iommufd, b.ioas, buf.addr(), K4, 0x1000) == 0);
  CHECK(h.fails(b.iommufd, IOMMU_IOAS_CHANGE_PROCESS, &cp) == EINVAL);  // user memory
}

// ---- domains, replication, pinning -------------------------------------------------------------

TEST_CASE("iommufd: mappings are replicated into every domain of the IOAS",
          "[iommufd][domains]") {
  Harness h;
  const int fd = h.open("iommu");
  const int d0 = h.open("vfio/devices/vfio0");
  const int d1 = h.open("vfio/devices/vfio1");
  REQUIRE(bind(h, d0, fd) == 0);
  REQUIRE(bind(h, d1, fd) == 0);
  const u32 ioas = ioas_alloc(h, fd);
  Buffer buf(2 * M2);
  REQUIRE(ioas_map_at(h, fd, ioas, buf.addr(), 2 * M2, 0x40000000) == 0);  // before attach
  u32 h0 = 0, h1 = 0;
  REQUIRE(attach(h, d0, ioas, &h0) == 0);
  REQUIRE(attach(h, d1, ioas, &h1) == 0);
  CHECK(h0 == h1);  // same unit: the automatic HWPT is shared
  auto t = translate(h, 0x40000000 + M2 + 0x40, iommu::Access::kWrite);
  REQUIRE(t.ok());
  CHECK(t.output == buf.addr() + M2 + 0x40);
  CHECK(t.page_size == M2);
  u64 iova = 0;
  REQUIRE(ioas_map(h, fd, ioas, buf.addr(), K4, &iova, IOMMU_IOAS_MAP_READABLE) == 0);
  CHECK(translate(h, iova, iommu::Access::kRead).output == buf.addr());
  CHECK(translate(h, iova, iommu::Access::kWrite).fault == iommu::FaultReason::kNoPermission);
  // A second HWPT for the same IOAS (HWPT_ALLOC) gets every mapping too.
  u32 devid0 = 0;
  {
    const int fd2 = h.open("iommu");
    (void)fd2;
  }
  iommu_hwpt_alloc a{};
  a.size = sizeof(a);
  a.dev_id = 1;  // vfio0's device object
  a.pt_id = ioas;
  REQUIRE(h.ioctl(fd, IOMMU_HWPT_ALLOC, &a) == 0);
  (void)devid0;
  auto doms = domains(h);
  REQUIRE(doms.size() == 2);
  for (const auto& d : doms) {
    auto tt = d->hw->translate(0x40000000 + 0x123, iommu::Access::kRead);
    REQUIRE(tt.ok());
    CHECK(tt.output == buf.addr() + 0x123);
  }
  u64 n = 0;
  REQUIRE(ioas_unmap(h, fd, ioas, 0, kMax, &n) == 0);
  for (const auto& d : domains(h)) CHECK(d->hw->stats().entries == 0);
  CHECK(user_locked(h) == 0);
}

TEST_CASE("iommufd: attach replaces; the old automatic HWPT goes", "[iommufd][domains]") {
  Harness h;
  Bound b(h);
  const u32 ioas2 = ioas_alloc(h, b.iommufd);
  Buffer buf(K4);
  REQUIRE(ioas_map_at(h, b.iommufd, ioas2, buf.addr(), K4, 0x7000) == 0);
  u32 again = 0;
  REQUIRE(attach(h, b.dev, b.ioas, &again) == 0);
  CHECK(again == b.hwpt);  // the same HWPT: nothing changes
  u32 moved = 0;
  REQUIRE(attach(h, b.dev, ioas2, &moved) == 0);
  CHECK(moved != b.hwpt);
  CHECK(destroy(h, b.iommufd, b.hwpt) == ENOENT);  // gone with its last device
  REQUIRE(domains(h).size() == 1);
  CHECK(translate(h, 0x7000).output == buf.addr());
  CHECK(iova_ranges(h, b.iommufd, b.ioas).size() == 1);  // the old IOAS lost the reservations
  CHECK(iova_ranges(h, b.iommufd, ioas2).size() == 2);
  CHECK(destroy(h, b.iommufd, b.ioas) == 0);
  // Replace with a HWPT of the same IOAS made by HWPT_ALLOC, then back.
  iommu_hwpt_alloc a{};
  a.size = sizeof(a);
  a.dev_id = b.devid;
  a.pt_id = ioas2;
  REQUIRE(h.ioctl(b.iommufd, IOMMU_HWPT_ALLOC, &a) == 0);
  u32 got = 0;
  REQUIRE(attach(h, b.dev, a.out_hwpt_id, &got) == 0);
  CHECK(got == a.out_hwpt_id);
  CHECK(domains(h).size() == 1);  // the automatic one went
  REQUIRE(attach(h, b.dev, ioas2, &got) == 0);
  CHECK(got != a.out_hwpt_id);
  CHECK(domains(h).size() == 2);
}

TEST_CASE("iommufd: attach fails when existing mappings do not fit the domain",
          "[iommufd][domains]") {
  Harness h;
  Bound b(h, "vfio/devices/vfio0", false);
  Buffer buf(2 * K4);
  SECTION("in the MSI window: EADDRINUSE") {
    REQUIRE(ioas_map_at(h, b.iommufd, b.ioas, buf.addr(), K4, kMsiFirst + K4) == 0);
    CHECK(attach(h, b.dev, b.ioas) == EADDRINUSE);
  }
  SECTION("beyond the 48-bit aperture: EADDRINUSE") {
    REQUIRE(ioas_map_at(h, b.iommufd, b.ioas, buf.addr(), K4, u64{1} << 50) == 0);
    CHECK(attach(h, b.dev, b.ioas) == EADDRINUSE);
  }
  SECTION("not page aligned: EADDRINUSE") {
    REQUIRE(ioas_map_at(h, b.iommufd, b.ioas, buf.addr(), 0x800, 0x1000) == 0);
    CHECK(attach(h, b.dev, b.ioas) == EADDRINUSE);
  }
  SECTION("not mapped in the caller: EFAULT (checked lazily, at attach)") {
    REQUIRE(ioas_map_at(h, b.iommufd, b.ioas, 0x10000, K4, 0x1000) == 0);
    CHECK(attach(h, b.dev, b.ioas) == EFAULT);
  }
  SECTION("a read-only buffer mapped WRITEABLE: EFAULT") {
    Buffer ro(K4, PROT_READ);
    REQUIRE(ioas_map_at(h, b.iommufd, b.ioas, ro.addr(), K4, 0x1000) == 0);
    CHECK(attach(h, b.dev, b.ioas) == EFAULT);
  }
  CHECK(domains(h).empty());  // all-or-nothing
  CHECK(user_locked(h) == 0);
  CHECK(iova_ranges(h, b.iommufd, b.ioas).size() == 1);
  CHECK(destroy(h, b.iommufd, b.ioas) == 0);
}

TEST_CASE("iommufd: with a domain, MAP pins: EFAULT and RLIMIT_MEMLOCK", "[iommufd][locked]") {
  Harness h;
  Bound b(h);
  Buffer rw(4 * K4);
  Buffer ro(K4, PROT_READ);
  CHECK(ioas_map_at(h, b.iommufd, b.ioas, 0x10000, K4, 0x1000) == EFAULT);  // unmapped VA
  CHECK(ioas_map_at(h, b.iommufd, b.ioas, ro.addr(), K4, 0x1000) == EFAULT);  // writeable
  CHECK(ioas_map_at(h, b.iommufd, b.ioas, ro.addr(), K4, 0x1000, IOMMU_IOAS_MAP_READABLE |
                    kFixed) == 0);
  CHECK(user_locked(h) == K4);
  h.memlock_limit_bytes = 3 * K4;
  CHECK(ioas_map_at(h, b.iommufd, b.ioas, rw.addr(), 3 * K4, 0x10000) == ENOMEM);
  CHECK(user_locked(h) == K4);
  CHECK(ioas_map_at(h, b.iommufd, b.ioas, rw.addr(), 2 * K4, 0x10000) == 0);
  CHECK(user_locked(h) == 3 * K4);
  // EFAULT wins over ENOMEM: pages are pinned before they are charged.
  CHECK(ioas_map_at(h, b.iommufd, b.ioas, 0x10000, 8 * K4, 0x20000) == EFAULT);
  u64 n = 0;
  REQUIRE(ioas_unmap(h, b.iommufd, b.ioas, 0, kMax, &n) == 0);
  CHECK(user_locked(h) == 0);
  // CAP_IPC_LOCK at MAP time: not charged at all.
  h.capabilities.insert(CAP_IPC_LOCK);
  CHECK(ioas_map_at(h, b.iommufd, b.ioas, rw.addr(), 4 * K4, 0x10000) == 0);
  CHECK(user_locked(h) == 0);
}

TEST_CASE("iommufd: RLIMIT_MEMLOCK at attach; per-process accounting with RLIMIT_MODE",
          "[iommufd][locked]") {
  Harness h;
  const int fd = h.open("iommu");
  const int dev = h.open("vfio/devices/vfio0");
  h.capabilities.insert(CAP_SYS_RESOURCE);
  iommu_option o{sizeof(o), IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 0, 1};
  REQUIRE(h.ioctl(fd, IOMMU_OPTION, &o) == 0);
  REQUIRE(bind(h, dev, fd) == 0);
  const u32 ioas = ioas_alloc(h, fd);
  Buffer buf(4 * K4);
  REQUIRE(ioas_map_at(h, fd, ioas, buf.addr(), 4 * K4, 0x10000) == 0);
  h.memlock_limit_bytes = 2 * K4;
  CHECK(attach(h, dev, ioas) == ENOMEM);
  CHECK(domains(h).empty());
  h.memlock_limit_bytes = kMax;
  REQUIRE(attach(h, dev, ioas) == 0);
  CHECK(process_locked(h) == 4 * K4);
  CHECK(user_locked(h) == 0);
  REQUIRE(detach(h, dev) == 0);  // the last domain unpins
  CHECK(process_locked(h) == 0);
}

TEST_CASE("iommufd: closing undoes everything; bound devices keep the context alive",
          "[iommufd][lifetime]") {
  Harness h;
  {
    Bound b(h);
    Buffer buf(K4);
    REQUIRE(ioas_map_at(h, b.iommufd, b.ioas, buf.addr(), K4, 0x1000) == 0);
    CHECK(user_locked(h) == K4);
    REQUIRE(h.close(b.iommufd) == 0);
    // The device still holds the context: its domain still translates.
    CHECK(translate(h, 0x1000).output == buf.addr());
    CHECK(user_locked(h) == K4);
    REQUIRE(h.close(b.dev) == 0);
    CHECK(domains(h).empty());
    CHECK(user_locked(h) == 0);
  }
  {
    Bound b(h);
    Buffer buf(K4);
    REQUIRE(ioas_map_at(h, b.iommufd, b.ioas, buf.addr(), K4, 0x1000) == 0);
    REQUIRE(h.close(b.dev) == 0);  // unbind: the automatic HWPT goes, mappings stay unpinned
    CHECK(domains(h).empty());
    CHECK(user_locked(h) == 0);
    REQUIRE(h.close(b.iommufd) == 0);
  }
  auto* vtd = dynamic_cast<iommu::vtd::VtdUnit*>(h.emu.device_by_cdev(0)->group().unit().get());
  REQUIRE(vtd != nullptr);
  CHECK(vtd->domains_in_use() == 0);
}

TEST_CASE("iommufd: out of VT-d domain ids is ENOSPC", "[iommufd][domains]") {
  Harness h(parse_topology(R"(
[[iommu]]
name = "small"
model = "vtd"
max_domains = 16
[[group]]
id = 1
iommu = "small"
devices = ["0000:00:01.0"]
)"));
  Bound b(h, "vfio/devices/vfio0", false);
  iommu_hwpt_alloc a{};
  a.size = sizeof(a);
  a.dev_id = b.devid;
  a.pt_id = b.ioas;
  for (int i = 0; i < 15; ++i) REQUIRE(h.ioctl(b.iommufd, IOMMU_HWPT_ALLOC, &a) == 0);
  CHECK(h.fails(b.iommufd, IOMMU_HWPT_ALLOC, &a) == ENOSPC);
  CHECK(attach(h, b.dev, b.ioas) == ENOSPC);
}

// ---- concurrency -------------------------------------------------------------------------------

namespace {

// ioctl(2) from another thread: the harness's fd table is not shared, so the file is passed.
int threaded_ioctl(Harness& h, const std::shared_ptr<core::File>& f, u32 cmd, void* arg) {
  core::IoctlCall call;
  call.cmd = cmd;
  call.arg = reinterpret_cast<u64>(arg);
  call.caller = h.caller;
  call.node_name = "threaded";
  call.mem = &h;
  call.fds = &h;
  call.env = &h;
  auto r = h.emu.ioctl(*f, call);
  return r ? 0 : r.error();
}

}  // namespace

TEST_CASE("iommufd: MAP/UNMAP on two IOASes while a device moves between them",
          "[iommufd][threads]") {
  Harness h;
  Bound b(h);
  const u32 other = ioas_alloc(h, b.iommufd);
  const auto iommufd = h.file(b.iommufd);
  const auto dev = h.file(b.dev);
  Buffer buf(16 * K4);
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};  // Catch2 assertions are not thread-safe: count, check afterwards
  auto expect = [&](bool ok) {
    if (!ok) ++bad;
  };
  auto mapper = [&](u32 ioas, u64 base) {
    for (int rounds = 0; !stop.load() || rounds < 50; ++rounds) {
      for (u64 i = 0; i < 8; ++i) {
        iommu_ioas_map m{sizeof(m), kRW | kFixed, ioas, 0, buf.addr() + i * K4, K4, base + i * K4};
        expect(threaded_ioctl(h, iommufd, IOMMU_IOAS_MAP, &m) == 0);
      }
      iommu_ioas_iova_ranges r{sizeof(r), ioas, 0, 0, 0, 0};
      expect(threaded_ioctl(h, iommufd, IOMMU_IOAS_IOVA_RANGES, &r) == EMSGSIZE);
      iommu_ioas_unmap u{sizeof(u), ioas, base, 8 * K4};
      expect(threaded_ioctl(h, iommufd, IOMMU_IOAS_UNMAP, &u) == 0 && u.length == 8 * K4);
    }
  };
  std::thread t1(mapper, b.ioas, 0x100000);
  std::thread t2(mapper, other, 0x200000);
  for (int i = 0; i < 200; ++i) {
    vfio_device_attach_iommufd_pt at{sizeof(at), 0, i % 2 ? b.ioas : other, 0};
    expect(threaded_ioctl(h, dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == 0);
  }
  stop = true;
  t1.join();
  t2.join();
  CHECK(bad.load() == 0);
  CHECK(user_locked(h) == 0);
  REQUIRE(h.close(b.dev) == 0);
  CHECK(domains(h).empty());
}
