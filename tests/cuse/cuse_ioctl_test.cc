// Unrestricted CUSE ioctls against the real daemon, with this test as the kernel and as the
// caller. Meson runs this program once per --arg-access mode ($CUSE_ARG_ACCESS): in `direct`
// and `auto` the daemon reads and writes our memory itself (1 round); in `retry` every argument
// byte travels through FUSE_IOCTL_RETRY rounds (shared/spec/cuse-fuse-transport.md §2.1).
//
// Round counts expected in retry mode are the fewest the protocol allows for what the daemon can
// know at each step:
//   - no argument, or the argument is a value:                          1
//   - a VFIO struct with a fixed minimum size, in and/or out at arg:     2  (round 2 carries
//     {arg, minsz} both ways: the spec's "fixed-size in or out", osspd's PREP_UARG)
//   - a VFIO struct whose out size depends on its argsz (GET_INFO):      3
//   - an iommufd struct: its `size` is itself in caller memory, so one round learns it and the
//     next carries {arg, size} both ways:                                3
//   - an iommufd struct with a pointer to an array (IOVA_RANGES with room, ALLOW_IOVAS): one more
//     for the array:                                                     4
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"
#include "core/uapi/vfio_emu.h"
#include "tests/cuse/cuse_rig.h"

namespace vfio_emu::test {
namespace {

using namespace uapi;
using std::uint32_t;
using std::uint64_t;

constexpr uint64_t kPage = CallerPages::kPage;
constexpr uint64_t kU64Max = ~uint64_t{0};

// An open file of one node of the rig.
struct Node {
  CuseKernel& k;
  uint64_t fh;

  Node(CuseRig& rig, const std::string& name) : k(rig[name]), fh(0) {
    auto r = k.open();
    INFO("open " << name << ": errno " << r.error());
    REQUIRE(r.ok());
    fh = *r;
  }
  IoctlOutcome ioctl(uint32_t cmd, const void* arg) { return k.ioctl(fh, cmd, arg); }
  IoctlOutcome ioctl(uint32_t cmd, uint64_t arg) { return k.ioctl(fh, cmd, arg); }
};

iommu_ioas_alloc ioas_alloc_cmd() {
  iommu_ioas_alloc cmd{};
  cmd.size = sizeof(cmd);
  return cmd;
}

uint32_t alloc_ioas(Node& iommufd) {
  iommu_ioas_alloc cmd = ioas_alloc_cmd();
  const IoctlOutcome o = iommufd.ioctl(IOMMU_IOAS_ALLOC, &cmd);
  INFO(iommufd.k.last_problem());
  REQUIRE(o.ret == 0);
  REQUIRE(cmd.out_ioas_id != 0);
  return cmd.out_ioas_id;
}

// A daemon serving only the iommufd node, one open iommufd and an IOAS in it.
struct IommufdRig {
  CuseRig rig{{"iommu"}};
  Node fd{rig, "iommu"};
  uint32_t ioas = alloc_ioas(fd);
};

iommu_ioas_map map_cmd(uint32_t ioas, const void* va, uint64_t length, uint32_t flags,
                       uint64_t iova = 0) {
  iommu_ioas_map cmd{};
  cmd.size = sizeof(cmd);
  cmd.flags = flags;
  cmd.ioas_id = ioas;
  cmd.user_va = reinterpret_cast<uint64_t>(va);
  cmd.length = length;
  cmd.iova = iova;
  return cmd;
}

iommu_ioas_unmap unmap_cmd(uint32_t ioas, uint64_t iova, uint64_t length) {
  iommu_ioas_unmap cmd{};
  cmd.size = sizeof(cmd);
  cmd.ioas_id = ioas;
  cmd.iova = iova;
  cmd.length = length;
  return cmd;
}

constexpr uint32_t kRW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

// ---- the container and the group ---------------------------------------------------------------

TEST_CASE("container: GET_API_VERSION and CHECK_EXTENSION take one round", "[container]") {
  CuseRig rig({"vfio/vfio"});
  Node c(rig, "vfio/vfio");
  IoctlOutcome o = c.ioctl(VFIO_GET_API_VERSION, uint64_t{0});
  CHECK(o.ret == VFIO_API_VERSION);
  CHECK(o.rounds == 1);
  // The extension is the argument itself: nothing to fetch, in any mode.
  o = c.ioctl(VFIO_CHECK_EXTENSION, uint64_t{VFIO_TYPE1v2_IOMMU});
  CHECK(o.ret == 1);
  CHECK(o.rounds == 1);
  o = c.ioctl(VFIO_CHECK_EXTENSION, uint64_t{0x7777});
  CHECK(o.ret == 0);
  CHECK(o.rounds == 1);
  // Any other number goes to the IOMMU driver, and without one it is EINVAL (Linux's
  // vfio_fops_unl_ioctl), with nothing fetched.
  o = c.ioctl(vfio_io(60), uint64_t{0});
  CHECK(o.ret == -EINVAL);
  CHECK(o.rounds == 1);
}

TEST_CASE("group: GET_STATUS writes the struct back", "[group]") {
  CuseRig rig({"vfio/1"});
  Node g(rig, "vfio/1");
  CallerPages mem(2);

  vfio_group_status status{};
  status.argsz = sizeof(status);
  status.flags = 0xdead0000;
  IoctlOutcome o = g.ioctl(VFIO_GROUP_GET_STATUS, &status);
  INFO(g.k.last_problem());
  CHECK(o.ret == 0);
  CHECK(status.flags == VFIO_GROUP_FLAGS_VIABLE);
  CHECK(status.argsz == sizeof(status));
  CHECK(o.rounds == rounds(2));
  // A number the group does not know: ENOTTY (vfio_group_fops_unl_ioctl), nothing fetched.
  o = g.ioctl(vfio_io(60), uint64_t{0});
  CHECK(o.ret == -ENOTTY);
  CHECK(o.rounds == 1);

  SECTION("argsz below the struct: EINVAL, nothing written") {
    status = {4, 0xdead0000};
    CHECK(g.ioctl(VFIO_GROUP_GET_STATUS, &status).ret == -EINVAL);
    CHECK(status.flags == 0xdead0000);
  }
  SECTION("an unreadable argument: EFAULT") {
    mem.protect(0, PROT_NONE);
    CHECK(g.ioctl(VFIO_GROUP_GET_STATUS, mem.addr(0)).ret == -EFAULT);
    CHECK(g.ioctl(VFIO_GROUP_GET_STATUS, uint64_t{0}).ret == -EFAULT);
  }
  SECTION("a readable but read-only argument: EFAULT when the struct goes back") {
    auto* s = reinterpret_cast<vfio_group_status*>(mem.page(1));
    *s = {sizeof(*s), 0};
    mem.protect(1, PROT_READ);
    CHECK(g.ioctl(VFIO_GROUP_GET_STATUS, s).ret == -EFAULT);
  }
}

// ---- iommufd ----------------------------------------------------------------------------------

TEST_CASE("iommufd: IOAS_ALLOC, IOAS_MAP with and without FIXED_IOVA, IOAS_UNMAP", "[iommufd]") {
  CuseRig rig({"iommu"});
  Node fd(rig, "iommu");
  CallerPages mem(4);

  iommu_ioas_alloc alloc = ioas_alloc_cmd();
  alloc.out_ioas_id = 0xffffffff;
  IoctlOutcome o = fd.ioctl(IOMMU_IOAS_ALLOC, &alloc);
  INFO(fd.k.last_problem());
  REQUIRE(o.ret == 0);
  CHECK(alloc.out_ioas_id == 1);
  CHECK(o.rounds == rounds(3));
  const uint32_t ioas = alloc.out_ioas_id;

  // FIXED_IOVA: the IOVA is ours, and comes back unchanged.
  iommu_ioas_map fixed = map_cmd(ioas, mem.page(0), 2 * kPage, kRW | IOMMU_IOAS_MAP_FIXED_IOVA,
                                 0x100000);
  o = fd.ioctl(IOMMU_IOAS_MAP, &fixed);
  REQUIRE(o.ret == 0);
  CHECK(fixed.iova == 0x100000);
  CHECK(o.rounds == rounds(3));
  // The same IOVA again: EEXIST.
  CHECK(fd.ioctl(IOMMU_IOAS_MAP, &fixed).ret == -EEXIST);

  // Without FIXED_IOVA the daemon picks the IOVA (never 0) and writes it back.
  iommu_ioas_map picked = map_cmd(ioas, mem.page(2), 2 * kPage, kRW, 0);
  o = fd.ioctl(IOMMU_IOAS_MAP, &picked);
  REQUIRE(o.ret == 0);
  CHECK(o.rounds == rounds(3));
  CHECK(picked.iova != 0);
  CHECK(picked.iova % kPage == 0);
  CHECK((picked.iova + 2 * kPage <= 0x100000 || picked.iova >= 0x100000 + 2 * kPage));

  // UNMAP writes back the bytes it unmapped.
  iommu_ioas_unmap unmap = unmap_cmd(ioas, 0x100000, 2 * kPage);
  o = fd.ioctl(IOMMU_IOAS_UNMAP, &unmap);
  REQUIRE(o.ret == 0);
  CHECK(unmap.length == 2 * kPage);
  CHECK(o.rounds == rounds(3));
  unmap = unmap_cmd(ioas, 0x100000, 2 * kPage);
  CHECK(fd.ioctl(IOMMU_IOAS_UNMAP, &unmap).ret == -ENOENT);
  // iova 0, length U64_MAX: everything, here the mapping the daemon placed.
  unmap = unmap_cmd(ioas, 0, kU64Max);
  REQUIRE(fd.ioctl(IOMMU_IOAS_UNMAP, &unmap).ret == 0);
  CHECK(unmap.length == 2 * kPage);

  SECTION("from another thread of the caller: the request names that thread") {
    iommu_ioas_map other = map_cmd(ioas, mem.page(3), kPage, kRW);
    IoctlOutcome t;
    std::thread([&] { t = fd.ioctl(IOMMU_IOAS_MAP, &other); }).join();
    CHECK(t.ret == 0);
    CHECK(t.rounds == rounds(3));
    CHECK(other.iova != 0);
  }
}

TEST_CASE("iommufd: IOAS_IOVA_RANGES, first the count, then the array", "[iommufd][pointer]") {
  IommufdRig r;
  Node& fd = r.fd;
  const uint32_t ioas = r.ioas;
  CallerPages mem(3);

  // Step 1: no room. EMSGSIZE, and the struct still comes back with the count filled in.
  iommu_ioas_iova_ranges cmd{};
  cmd.size = sizeof(cmd);
  cmd.ioas_id = ioas;
  IoctlOutcome o = fd.ioctl(IOMMU_IOAS_IOVA_RANGES, &cmd);
  INFO(fd.k.last_problem());
  CHECK(o.ret == -EMSGSIZE);
  CHECK(cmd.num_iovas == 1);  // an IOAS without devices: all of [0, U64_MAX]
  CHECK(cmd.out_iova_alignment == 1);  // iopt_init_table; a domain would raise it
  CHECK(o.rounds == rounds(3));

  // Step 2: room for more than there are; the daemon writes through the pointer, and only the
  // elements it fills.
  auto* ranges = reinterpret_cast<iommu_iova_range*>(mem.page(0));
  std::memset(ranges, 0xa5, 4 * sizeof(*ranges));
  cmd.num_iovas = 4;
  cmd.allowed_iovas = reinterpret_cast<uint64_t>(ranges);
  cmd.out_iova_alignment = 0;
  o = fd.ioctl(IOMMU_IOAS_IOVA_RANGES, &cmd);
  CHECK(o.ret == 0);
  CHECK(cmd.num_iovas == 1);
  CHECK(cmd.out_iova_alignment == 1);
  CHECK(ranges[0].start == 0);
  CHECK(ranges[0].last == kU64Max);
  const std::vector<uint8_t> untouched(3 * sizeof(*ranges), 0xa5);
  CHECK(std::memcmp(&ranges[1], untouched.data(), untouched.size()) == 0);
  CHECK(o.rounds == rounds(4));

  SECTION("an array that cannot be written: EFAULT") {
    auto* ro = reinterpret_cast<iommu_iova_range*>(mem.page(1));
    mem.protect(1, PROT_READ);
    cmd.num_iovas = 1;
    cmd.allowed_iovas = reinterpret_cast<uint64_t>(ro);
    CHECK(fd.ioctl(IOMMU_IOAS_IOVA_RANGES, &cmd).ret == -EFAULT);
    mem.protect(2, PROT_NONE);
    cmd.allowed_iovas = mem.addr(2);
    CHECK(fd.ioctl(IOMMU_IOAS_IOVA_RANGES, &cmd).ret == -EFAULT);
  }
  SECTION("an IOAS that does not exist: ENOENT") {
    cmd.ioas_id = ioas + 7;
    CHECK(fd.ioctl(IOMMU_IOAS_IOVA_RANGES, &cmd).ret == -ENOENT);
  }
}

TEST_CASE("iommufd: IOAS_ALLOW_IOVAS reads the array its pointer names", "[iommufd][pointer]") {
  IommufdRig r;
  Node& fd = r.fd;
  const uint32_t ioas = r.ioas;
  CallerPages mem(2);

  const iommu_iova_range allowed[] = {{0x40000000, 0x4fffffff}, {0x10000000, 0x1fffffff}};
  iommu_ioas_allow_iovas cmd{};
  cmd.size = sizeof(cmd);
  cmd.ioas_id = ioas;
  cmd.num_iovas = 2;
  cmd.allowed_iovas = reinterpret_cast<uint64_t>(allowed);
  IoctlOutcome o = fd.ioctl(IOMMU_IOAS_ALLOW_IOVAS, &cmd);
  INFO(fd.k.last_problem());
  REQUIRE(o.ret == 0);
  CHECK(o.rounds == rounds(4));

  // The daemon now picks IOVAs only inside the allowed ranges.
  iommu_ioas_map map = map_cmd(ioas, mem.page(0), kPage, kRW);
  REQUIRE(fd.ioctl(IOMMU_IOAS_MAP, &map).ret == 0);
  CHECK(map.iova >= 0x10000000);
  CHECK(map.iova + kPage - 1 <= 0x1fffffff);

  SECTION("a range with start >= last, or two that overlap: EINVAL") {
    const iommu_iova_range bad[] = {{0x1000, 0x1000}};
    cmd.num_iovas = 1;
    cmd.allowed_iovas = reinterpret_cast<uint64_t>(bad);
    CHECK(fd.ioctl(IOMMU_IOAS_ALLOW_IOVAS, &cmd).ret == -EINVAL);
    const iommu_iova_range overlap[] = {{0x1000, 0x4fff}, {0x4000, 0x8fff}};
    cmd.num_iovas = 2;
    cmd.allowed_iovas = reinterpret_cast<uint64_t>(overlap);
    CHECK(fd.ioctl(IOMMU_IOAS_ALLOW_IOVAS, &cmd).ret == -EINVAL);
  }
  SECTION("an array that cannot be read: EFAULT") {
    mem.protect(1, PROT_NONE);
    cmd.num_iovas = 1;
    cmd.allowed_iovas = mem.addr(1);
    CHECK(fd.ioctl(IOMMU_IOAS_ALLOW_IOVAS, &cmd).ret == -EFAULT);
  }
}

TEST_CASE("iommufd: the VFIO type1 compat layer (GET_INFO with capabilities, MAP_DMA, UNMAP_DMA)",
          "[iommufd][compat]") {
  IommufdRig r;
  Node& fd = r.fd;
  const uint32_t ioas = r.ioas;
  CallerPages mem(4);

  iommu_vfio_ioas set{};
  set.size = sizeof(set);
  set.ioas_id = ioas;
  set.op = IOMMU_VFIO_IOAS_SET;
  REQUIRE(fd.ioctl(IOMMU_VFIO_IOAS, &set).ret == 0);

  // GET_INFO with just the fixed struct: argsz comes back as the size with capabilities.
  vfio_iommu_type1_info info{};
  info.argsz = sizeof(info);
  IoctlOutcome o = fd.ioctl(VFIO_IOMMU_GET_INFO, &info);
  INFO(fd.k.last_problem());
  REQUIRE(o.ret == 0);
  CHECK(o.rounds == rounds(3));
  CHECK((info.flags & VFIO_IOMMU_INFO_PGSIZES));
  CHECK((info.iova_pgsizes & kPage));
  REQUIRE(info.argsz > sizeof(info));
  // Again with room for the chain: walk it to the IOVA range capability.
  std::vector<uint8_t> buf(info.argsz);
  auto* full = reinterpret_cast<vfio_iommu_type1_info*>(buf.data());
  full->argsz = info.argsz;
  o = fd.ioctl(VFIO_IOMMU_GET_INFO, full);
  REQUIRE(o.ret == 0);
  CHECK(o.rounds == rounds(3));
  REQUIRE((full->flags & VFIO_IOMMU_INFO_CAPS));
  bool found = false;
  for (uint32_t at = full->cap_offset; at != 0 && at + sizeof(vfio_info_cap_header) <= buf.size();) {
    vfio_info_cap_header h;
    std::memcpy(&h, buf.data() + at, sizeof(h));
    if (h.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
      vfio_iommu_type1_info_cap_iova_range cap;
      std::memcpy(&cap, buf.data() + at, sizeof(cap));
      CHECK(cap.nr_iovas == 1);
      found = true;
    }
    at = h.next;
  }
  CHECK(found);

  vfio_iommu_type1_dma_map map{};
  map.argsz = sizeof(map);
  map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  map.vaddr = mem.addr(0);
  map.iova = 0x200000;
  map.size = 2 * kPage;
  o = fd.ioctl(VFIO_IOMMU_MAP_DMA, &map);
  REQUIRE(o.ret == 0);
  CHECK(o.rounds == rounds(2));

  vfio_iommu_type1_dma_unmap unmap{};
  unmap.argsz = sizeof(unmap);
  unmap.iova = 0x200000;
  unmap.size = 2 * kPage;
  o = fd.ioctl(VFIO_IOMMU_UNMAP_DMA, &unmap);
  REQUIRE(o.ret == 0);
  CHECK(unmap.size == 2 * kPage);
  CHECK(o.rounds == rounds(2));
}

// ---- errors -------------------------------------------------------------------------------------

TEST_CASE("errors come back the same through every argument path", "[errors]") {
  CuseRig rig({"iommu", "vfio/devices/vfio0"});
  Node fd(rig, "iommu");
  const uint32_t ioas = alloc_ioas(fd);
  CallerPages mem(2);

  SECTION("size below the minimum: EINVAL") {
    iommu_ioas_alloc cmd = ioas_alloc_cmd();
    cmd.size = 8;
    CHECK(fd.ioctl(IOMMU_IOAS_ALLOC, &cmd).ret == -EINVAL);
    cmd.size = 0;
    CHECK(fd.ioctl(IOMMU_IOAS_ALLOC, &cmd).ret == -EINVAL);
  }
  SECTION("unknown flags: EOPNOTSUPP; no access at all: EINVAL") {
    iommu_ioas_alloc cmd = ioas_alloc_cmd();
    cmd.flags = 1;
    CHECK(fd.ioctl(IOMMU_IOAS_ALLOC, &cmd).ret == -EOPNOTSUPP);
    iommu_ioas_map map = map_cmd(ioas, mem.page(0), kPage, kRW | (1U << 3));
    CHECK(fd.ioctl(IOMMU_IOAS_MAP, &map).ret == -EOPNOTSUPP);
    map = map_cmd(ioas, mem.page(0), kPage, 0);
    CHECK(fd.ioctl(IOMMU_IOAS_MAP, &map).ret == -EINVAL);
  }
  SECTION("a larger struct than the kernel's: its tail must be zero, else E2BIG") {
    struct {
      iommu_ioas_alloc cmd;
      uint32_t tail;
    } big{};
    big.cmd.size = sizeof(big);
    CHECK(fd.ioctl(IOMMU_IOAS_ALLOC, &big).ret == 0);
    CHECK(big.cmd.out_ioas_id != 0);
    big.tail = 1;
    CHECK(fd.ioctl(IOMMU_IOAS_ALLOC, &big).ret == -E2BIG);
  }
  SECTION("an unreadable argument pointer: EFAULT") {
    mem.protect(1, PROT_NONE);
    CHECK(fd.ioctl(IOMMU_IOAS_ALLOC, mem.addr(1)).ret == -EFAULT);
    CHECK(fd.ioctl(IOMMU_IOAS_ALLOC, uint64_t{8}).ret == -EFAULT);
  }
  SECTION("a struct that runs into an unreadable page: EFAULT") {
    mem.protect(1, PROT_NONE);
    auto* cmd = reinterpret_cast<iommu_ioas_map*>(mem.page(1) - 16);
    cmd->size = sizeof(iommu_ioas_map);
    CHECK(fd.ioctl(IOMMU_IOAS_MAP, cmd).ret == -EFAULT);
  }
  SECTION("a cdev before BIND: EINVAL for anything, before its argument is read") {
    Node dev(rig, "vfio/devices/vfio0");
    vfio_device_info info{};
    info.argsz = sizeof(info);
    const IoctlOutcome o = dev.ioctl(VFIO_DEVICE_GET_INFO, &info);
    CHECK(o.ret == -EINVAL);
    CHECK(o.rounds == 1);
  }
}

// ---- fd arguments -------------------------------------------------------------------------------

// What cannot be tested here: a fd argument that does name one of our nodes. The daemon takes the
// fd out of the caller with pidfd_getfd, proves it is ours by fstat (a character device with a
// device number the kernel gave one of our CUSE nodes, learnt by stat()ing /dev/<DEVNAME> once
// CUSE_INIT is answered), and then asks the kernel which open file it is with VFIO_EMU_IDENTIFY,
// which the kernel routes back to the daemon as an ioctl with that file's fh. Over a socketpair
// there is no /dev/<DEVNAME>, no device number and no kernel to route the identify, and every
// fd this test could pass is a socket, a pipe or a file. So SET_CONTAINER/BIND with a real
// container or iommufd needs kernel CUSE (the real-CUSE test) or the FUSE transport (suite fuse);
// here only the refusals are reachable.
TEST_CASE("fd arguments: a number that is not open, and an fd that is not ours", "[fd]") {
  CuseRig rig({"vfio/1", "vfio/devices/vfio2"});
  Pipe pipe;

  SECTION("SET_CONTAINER") {
    Node g(rig, "vfio/1");
    int32_t fd = 4000;  // not open in this process
    IoctlOutcome o = g.ioctl(VFIO_GROUP_SET_CONTAINER, &fd);
    INFO(g.k.last_problem());
    CHECK(o.ret == -EBADF);
    CHECK(o.rounds == rounds(2));
    fd = -1;
    CHECK(g.ioctl(VFIO_GROUP_SET_CONTAINER, &fd).ret == -EBADF);
    fd = pipe.fds[0];  // open, but no VFIO file: the daemon must not touch it
    o = g.ioctl(VFIO_GROUP_SET_CONTAINER, &fd);
    CHECK(o.ret == -EBADFD);
    CHECK(o.rounds == rounds(2));
    // Neither changed the group.
    vfio_group_status status{sizeof(status), 0};
    CHECK(g.ioctl(VFIO_GROUP_GET_STATUS, &status).ret == 0);
    CHECK(status.flags == VFIO_GROUP_FLAGS_VIABLE);
  }
  SECTION("BIND_IOMMUFD") {
    Node dev(rig, "vfio/devices/vfio2");
    vfio_device_bind_iommufd bind{};
    bind.argsz = sizeof(bind);
    bind.iommufd = 4000;
    CHECK(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, &bind).ret == -EBADF);
    bind.iommufd = pipe.fds[1];
    CHECK(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, &bind).ret == -EBADFD);
    bind.iommufd = -1;
    CHECK(dev.ioctl(VFIO_DEVICE_BIND_IOMMUFD, &bind).ret == -EINVAL);
  }
}

TEST_CASE("VFIO_EMU_IDENTIFY answers only the daemon itself", "[fd]") {
  // The daemon's fd resolver asks the kernel which open file an fd is with this private ioctl;
  // a caller must not learn the daemon's file ids with it. The kernel would send the daemon's
  // own pid for the daemon's ioctl; here the test claims it. To anyone else the number is an
  // unknown ioctl: EINVAL on a container without an IOMMU driver, ENOTTY on an iommufd, as Linux.
  CuseRig rig({"vfio/vfio", "iommu"});
  Node c(rig, "vfio/vfio");
  IoctlOutcome o = c.ioctl(VFIO_EMU_IDENTIFY, uint64_t{0});
  CHECK(o.ret == -EINVAL);
  CHECK(o.rounds == 1);
  Node stranger(rig, "iommu");
  CHECK(stranger.ioctl(VFIO_EMU_IDENTIFY, uint64_t{0}).ret == -ENOTTY);
  c.k.set_caller_pid(rig.daemon().pid());
  o = c.ioctl(VFIO_EMU_IDENTIFY, uint64_t{0});
  CHECK(o.ret > 0);
  CHECK(o.rounds == 1);
  Node i(rig, "iommu");
  i.k.set_caller_pid(rig.daemon().pid());
  const IoctlOutcome other = i.ioctl(VFIO_EMU_IDENTIFY, uint64_t{0});
  CHECK(other.ret > 0);
  CHECK(other.ret != o.ret);
}

// ---- callers the daemon cannot see ---------------------------------------------------------------

TEST_CASE("a caller outside the daemon's pid namespace (request pid 0)", "[pid0]") {
  // The kernel sends pid 0 when the caller is not visible in the namespace of the process that
  // opened /dev/cuse: process_vm_* cannot reach it. auto falls back to the retry protocol, direct
  // refuses with EPERM, retry does not care.
  CuseRig rig({"vfio/1", "iommu"});
  Node g(rig, "vfio/1");
  g.k.set_caller_pid(0);
  vfio_group_status status{sizeof(status), 0};
  const IoctlOutcome o = g.ioctl(VFIO_GROUP_GET_STATUS, &status);
  INFO(g.k.last_problem());
  if (arg_access() == "direct") {
    CHECK(o.ret == -EPERM);
  } else {
    CHECK(o.ret == 0);
    CHECK(status.flags == VFIO_GROUP_FLAGS_VIABLE);
    CHECK(o.rounds == 2);
  }
  // Nothing to fetch: one round and a real answer in every mode.
  CHECK(g.ioctl(VFIO_GROUP_UNSET_CONTAINER, uint64_t{0}).ret == -EINVAL);

  if (arg_access() != "direct") {
    Node fd(rig, "iommu");
    fd.k.set_caller_pid(0);
    const uint32_t ioas = alloc_ioas(fd);
    CallerPages mem(1);
    iommu_ioas_map map = map_cmd(ioas, mem.page(0), kPage, kRW);
    const IoctlOutcome m = fd.ioctl(IOMMU_IOAS_MAP, &map);
    CHECK(m.ret == 0);
    CHECK(m.rounds == 3);
    CHECK(map.iova != 0);
  }
}

TEST_CASE("a caller the daemon can see but not reach (request pid of kthreadd)", "[pid0]") {
  // auto means "direct, and the retry protocol for a caller whose memory is out of reach"; not
  // only callers in another pid namespace (pid 0) are: an unprivileged daemon, Yama
  // ptrace_scope 3 or a caller without a memory map make process_vm_readv fail for a pid it can
  // see. kthreadd (pid 2) is such a caller: visible, and with no memory to read (ESRCH).
  std::ifstream status("/proc/2/status");
  std::string first_line;
  std::getline(status, first_line);
  if (first_line.find("kthreadd") == std::string::npos) {
    WARN("pid 2 is not kthreadd here (" << first_line << "): nothing to test");
    return;
  }
  CuseRig rig({"iommu"});
  Node fd(rig, "iommu");
  fd.k.set_caller_pid(2);
  iommu_ioas_alloc cmd = ioas_alloc_cmd();
  const IoctlOutcome o = fd.ioctl(IOMMU_IOAS_ALLOC, &cmd);
  INFO(fd.k.last_problem());
  if (arg_access() == "direct") {
    CHECK(o.ret == -EPERM);
    CHECK(o.rounds == 1);
  } else {
    CHECK(o.ret == 0);
    CHECK(cmd.out_ioas_id != 0);
    CHECK(o.rounds == 3);
  }
}

// ---- the 128 KiB limit ----------------------------------------------------------------------------

TEST_CASE("the retry protocol's 128 KiB limit: ALLOW_IOVAS with 9000 ranges", "[limits]") {
  // fuse_do_ioctl moves at most fc->max_pages (32) pages per direction, and CUSE never raises
  // it. Allowing a fragmented IOVA space is a realistic ioctl that needs more: 9000 ranges are
  // 144000 bytes of in-data. Linux takes it, and so does the daemon when it reads the caller
  // itself; through the retry protocol it cannot arrive, and the caller gets ENOMEM.
  IommufdRig r;
  Node& fd = r.fd;
  const uint32_t ioas = r.ioas;
  std::vector<iommu_iova_range> ranges(9000);
  for (size_t i = 0; i < ranges.size(); ++i)
    ranges[i] = {0x100000000 + i * 0x10000, 0x100000000 + i * 0x10000 + 0x7fff};
  static_assert(9000 * sizeof(iommu_iova_range) > CuseKernel::kMaxBytesPerDirection);
  iommu_ioas_allow_iovas cmd{};
  cmd.size = sizeof(cmd);
  cmd.ioas_id = ioas;
  cmd.num_iovas = static_cast<uint32_t>(ranges.size());
  cmd.allowed_iovas = reinterpret_cast<uint64_t>(ranges.data());
  const IoctlOutcome o = fd.ioctl(IOMMU_IOAS_ALLOW_IOVAS, &cmd);
  INFO(fd.k.last_problem() << " (" << o.rounds << " rounds)");
  CHECK(o.ret == (retry_mode() ? -ENOMEM : 0));

  SECTION("just under the limit, it works through the retry protocol too, in 4 rounds") {
    cmd.num_iovas = 8000;  // 128000 bytes, and the struct itself
    static_assert(8000 * sizeof(iommu_iova_range) + sizeof(cmd) < CuseKernel::kMaxBytesPerDirection);
    const IoctlOutcome under = fd.ioctl(IOMMU_IOAS_ALLOW_IOVAS, &cmd);
    INFO(fd.k.last_problem());
    CHECK(under.ret == 0);
    CHECK(under.rounds == rounds(4));
  }
}

}  // namespace
}  // namespace vfio_emu::test
