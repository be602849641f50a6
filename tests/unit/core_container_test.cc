// The container and group nodes: the BIND (SET_CONTAINER) and its failures, SET_IOMMU, the
// group ioctls, and what closing each fd undoes. Built-in topology: groups 1 and 2 on VT-d unit
// dmar0, group 3 on TCE unit phb0, group 4 on nop0.
#include <catch2/catch.hpp>

#include <fmt/core.h>

#include <cstring>

#include "core/type1.h"
#include "core/uapi/vfio.h"
#include "tests/unit/core_harness.h"

using namespace vfio_emu;
using namespace vfio_emu::core;
using namespace vfio_emu::uapi;
using vfio_emu::test::Buffer;
using vfio_emu::test::Harness;

namespace {

Topology parse_or_fail(const std::string& text) {
  std::string error;
  auto t = Topology::parse(text, &error);
  INFO(error);
  REQUIRE(t.has_value());
  return std::move(*t);
}

u32 group_flags(Harness& h, int group) {
  vfio_group_status st{};
  st.argsz = sizeof(st);
  REQUIRE(h.ioctl(group, VFIO_GROUP_GET_STATUS, &st) == 0);
  return st.flags;
}

int set_container(Harness& h, int group, int fd) { return h.fails(group, VFIO_GROUP_SET_CONTAINER, &fd); }

}  // namespace

TEST_CASE("container: API version and extensions before anything is set", "[container]") {
  Harness h;
  const int c = h.open("vfio/vfio");
  REQUIRE(c >= 0);
  CHECK(h.ioctl(c, VFIO_GET_API_VERSION) == VFIO_API_VERSION);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) == 1);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 1);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL) == 1);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_UPDATE_VADDR) == 0);  // needs SET_IOMMU
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU) == 0);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1_NESTING_IOMMU) == 0);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU) == 0);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, 12345) == 0);
}

TEST_CASE("container: ioctls before SET_IOMMU", "[container]") {
  Harness h;
  const int c = h.open("vfio/vfio");
  CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == EINVAL);  // no group yet
  vfio_iommu_type1_dma_map map{};
  map.argsz = sizeof(map);
  CHECK(h.fails(c, VFIO_IOMMU_MAP_DMA, &map) == EINVAL);            // no driver
  CHECK(h.fails(c, VFIO_IOMMU_GET_INFO, &map) == EINVAL);
  CHECK(h.fails(c, 0x3b7a) == EINVAL);                               // anything: EINVAL
  const int g = h.open("vfio/1");
  REQUIRE(set_container(h, g, c) == 0);
  CHECK(h.fails(c, VFIO_IOMMU_MAP_DMA, &map) == EINVAL);
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == EINVAL);  // already set
  CHECK(h.fails(c, 0x3b7a) == ENOTTY);                               // now the driver answers
  CHECK(h.fails(c, VFIO_IOMMU_ENABLE) == ENOTTY);                    // sPAPR-only on type1
  CHECK(h.fails(g, 0x3b7a) == ENOTTY);
}

TEST_CASE("group: one open at a time; status follows the container", "[group]") {
  Harness h;
  const int g = h.open("vfio/1");
  REQUIRE(g >= 0);
  CHECK(h.open("vfio/1") == -1);
  CHECK(errno == EBUSY);
  CHECK(group_flags(h, g) == VFIO_GROUP_FLAGS_VIABLE);
  const int c = h.open("vfio/vfio");
  REQUIRE(set_container(h, g, c) == 0);
  CHECK(group_flags(h, g) == (VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET));
  REQUIRE(h.ioctl(g, VFIO_GROUP_UNSET_CONTAINER) == 0);
  CHECK(group_flags(h, g) == VFIO_GROUP_FLAGS_VIABLE);
  CHECK(h.fails(g, VFIO_GROUP_UNSET_CONTAINER) == EINVAL);
  h.close(g);
  CHECK(h.open("vfio/1") >= 0);  // free again after close
}

TEST_CASE("group: GET_STATUS argument errors", "[group]") {
  Harness h;
  const int g = h.open("vfio/2");
  vfio_group_status st{};
  st.argsz = 7;
  CHECK(h.fails(g, VFIO_GROUP_GET_STATUS, &st) == EINVAL);
  CHECK(h.fails(g, VFIO_GROUP_GET_STATUS, u64{8}) == EFAULT);
  // A larger argsz is fine; exactly 8 bytes come back.
  struct {
    vfio_group_status st;
    u32 canary;
  } big{{16, 0}, 0xabcdef01};
  REQUIRE(h.ioctl(g, VFIO_GROUP_GET_STATUS, &big) == 0);
  CHECK(big.st.flags == VFIO_GROUP_FLAGS_VIABLE);
  CHECK(big.canary == 0xabcdef01);
}

TEST_CASE("group: SET_CONTAINER takes only a container or an iommufd", "[group][bind]") {
  Harness h;
  const int g = h.open("vfio/1");
  const int g2 = h.open("vfio/2");
  const int c = h.open("vfio/vfio");
  CHECK(h.fails(g, VFIO_GROUP_SET_CONTAINER, u64{0x10}) == EFAULT);  // unreadable pointer
  CHECK(set_container(h, g, 9999) == EBADF);                         // not an fd
  CHECK(set_container(h, g, h.foreign_fd()) == EBADFD);               // an fd, not ours
  CHECK(set_container(h, g, g2) == EBADFD);                          // the group fd swapped in
  CHECK(set_container(h, g, g) == EBADFD);
  CHECK(group_flags(h, g) == VFIO_GROUP_FLAGS_VIABLE);               // nothing happened
  REQUIRE(set_container(h, g, c) == 0);
  CHECK(set_container(h, g, c) == EINVAL);                           // already set: not EBUSY
  const int c2 = h.open("vfio/vfio");
  CHECK(set_container(h, g, c2) == EINVAL);
  // EBADF comes before "already set", as in Linux.
  CHECK(set_container(h, g, 9999) == EBADF);
}

TEST_CASE("container: SET_IOMMU picks a driver the groups' IOMMU can serve", "[container][bind]") {
  Harness h;
  SECTION("unknown type") {
    const int c = h.open("vfio/vfio");
    const int g = h.open("vfio/1");
    REQUIRE(set_container(h, g, c) == 0);
    CHECK(h.fails(c, VFIO_SET_IOMMU, 42) == ENODEV);
    CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_TYPE1_NESTING_IOMMU) == ENODEV);  // gone
    CHECK(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) == 0);
  }
  SECTION("type1 on a POWER (TCE) group: the model does not support the type") {
    const int c = h.open("vfio/vfio");
    const int g = h.open("vfio/3");
    REQUIRE(set_container(h, g, c) == 0);
    CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == ENODEV);
    CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 0);  // not for this group
  }
  SECTION("sPAPR on a VT-d group") {
    const int c = h.open("vfio/vfio");
    const int g = h.open("vfio/1");
    REQUIRE(set_container(h, g, c) == 0);
    CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU) == ENODEV);
    CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU) == 0);
  }
  SECTION("nop groups take type1, like emulated (mdev) groups") {
    const int c = h.open("vfio/vfio");
    const int g = h.open("vfio/4");
    REQUIRE(set_container(h, g, c) == 0);
    CHECK(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
    CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_UPDATE_VADDR) == 0);  // emulated group present
    CHECK(h.emu.domains().empty());                                   // no IOMMU domain
  }
}

TEST_CASE("container: an incompatible IOMMU in the container is refused", "[container][bind]") {
  Harness h;
  const int c = h.open("vfio/vfio");
  const int vtd = h.open("vfio/1");
  const int tce = h.open("vfio/3");
  const int nop = h.open("vfio/4");
  REQUIRE(set_container(h, vtd, c) == 0);
  CHECK(set_container(h, tce, c) == EPERM);  // before SET_IOMMU
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  CHECK(set_container(h, tce, c) == EPERM);  // and after
  CHECK(set_container(h, nop, c) == 0);      // VT-d and nop share type1
  CHECK(group_flags(h, tce) == VFIO_GROUP_FLAGS_VIABLE);
}

TEST_CASE("container: a unit out of domain ids refuses the BIND with ENOSPC", "[container][bind]") {
  std::string text =
      "[[iommu]]\nname = \"dmar0\"\nmodel = \"vtd\"\nmax_domains = 16\n";
  for (int i = 1; i <= 16; ++i)
    text += fmt::format("[[group]]\nid = {}\niommu = \"dmar0\"\ndevices = [\"0000:00:{:02x}.0\"]\n",
                        i, i);
  Harness h(parse_or_fail(text));
  std::vector<int> containers;
  for (int i = 1; i <= 15; ++i) {  // DID 0 is reserved: 15 domains
    const int c = h.open("vfio/vfio");
    const int g = h.open("vfio/" + std::to_string(i));
    REQUIRE(set_container(h, g, c) == 0);
    REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
    containers.push_back(c);
  }
  const int c = h.open("vfio/vfio");
  const int g = h.open("vfio/16");
  REQUIRE(set_container(h, g, c) == 0);
  CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == ENOSPC);
  // Nothing half-done: the container still has no driver and the group stays in it.
  CHECK(h.fails(c, VFIO_IOMMU_GET_INFO, u64{0}) == EINVAL);
  CHECK(group_flags(h, g) == (VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET));
  // Closing one container gives its domain id back.
  h.close(h.open("vfio/vfio"));
  const int first_group_fd = containers.front() + 1;
  h.close(first_group_fd);  // the group fd of container 1: detaches, the driver goes
  CHECK(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
}

TEST_CASE("container: groups on one unit share a domain; other units get their own",
          "[container]") {
  Harness h(parse_or_fail(R"(
[[iommu]]
name = "dmar0"
model = "vtd"
[[iommu]]
name = "dmar1"
model = "vtd"
aw_bits = 39
[[group]]
id = 1
iommu = "dmar0"
devices = ["0000:00:01.0"]
[[group]]
id = 2
iommu = "dmar0"
devices = ["0000:00:02.0"]
[[group]]
id = 3
iommu = "dmar1"
devices = ["0000:01:00.0"]
)"));
  const int c = h.open("vfio/vfio");
  const int g1 = h.open("vfio/1");
  const int g2 = h.open("vfio/2");
  const int g3 = h.open("vfio/3");
  REQUIRE(set_container(h, g1, c) == 0);
  REQUIRE(set_container(h, g2, c) == 0);
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  CHECK(h.emu.domains().size() == 1);
  Buffer buf(1 << 21);
  vfio_iommu_type1_dma_map map{sizeof(map), VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                               buf.addr(), 0x40000000, 1 << 21};
  REQUIRE(h.ioctl(c, VFIO_IOMMU_MAP_DMA, &map) == 0);
  // A group on another unit: a second domain, with the mapping replayed into it.
  REQUIRE(set_container(h, g3, c) == 0);
  {
    auto doms = h.emu.domains();
    REQUIRE(doms.size() == 2);
    for (const auto& d : doms) {
      const auto t = d->hw->translate(0x40001234, iommu::Access::kWrite);
      CHECK(t.ok());
      CHECK(t.output == buf.addr() + 0x1234);
    }
  }
  // The 39-bit unit narrows the IOVA range: a map above 2^39 is now refused.
  Buffer buf2(4096);
  vfio_iommu_type1_dma_map high{sizeof(high), VFIO_DMA_MAP_FLAG_READ, buf2.addr(),
                                u64{1} << 40, 4096};
  CHECK(h.fails(c, VFIO_IOMMU_MAP_DMA, &high) == EINVAL);
  // Its group leaving takes that domain away.
  REQUIRE(h.ioctl(g3, VFIO_GROUP_UNSET_CONTAINER) == 0);
  CHECK(h.emu.domains().size() == 1);
  CHECK(h.ioctl(c, VFIO_IOMMU_MAP_DMA, &high) == 0);
}

TEST_CASE("container: closing fds undoes what they held", "[container]") {
  Harness h;
  Buffer buf(1 << 20);
  const int c = h.open("vfio/vfio");
  const int g = h.open("vfio/1");
  REQUIRE(set_container(h, g, c) == 0);
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  vfio_iommu_type1_dma_map map{sizeof(map), VFIO_DMA_MAP_FLAG_READ, buf.addr(), 0, 1 << 20};
  REQUIRE(h.ioctl(c, VFIO_IOMMU_MAP_DMA, &map) == 0);
  CHECK(h.emu.locked_memory().charged(getpid()) == 1 << 20);
  SECTION("closing the container fd keeps the container while its group holds it") {
    h.close(c);
    CHECK(h.emu.domains().size() == 1);
    CHECK(group_flags(h, g) == (VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET));
    h.close(g);
    CHECK(h.emu.domains().empty());
    CHECK(h.emu.locked_memory().charged(getpid()) == 0);
  }
  SECTION("closing the group detaches it; the last group takes the driver") {
    h.close(g);
    CHECK(h.emu.domains().empty());
    CHECK(h.emu.locked_memory().charged(getpid()) == 0);
    CHECK(h.fails(c, VFIO_IOMMU_MAP_DMA, &map) == EINVAL);  // back to "no driver"
    const int g2 = h.open("vfio/1");
    REQUIRE(set_container(h, g2, c) == 0);  // the container is reusable
    REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) == 0);
  }
  SECTION("a dup'd fd keeps the file open") {
    const int g2 = h.dup(g);
    h.close(g);
    CHECK(h.emu.domains().size() == 1);
    h.close(g2);
    CHECK(h.emu.domains().empty());
  }
}

TEST_CASE("group: GET_DEVICE_FD", "[group]") {
  Harness h;
  const int g = h.open("vfio/1");
  const int c = h.open("vfio/vfio");
  const char good[] = "0000:00:01.0";
  const char other[] = "0000:00:02.0";
  const char token[] = "0000:00:01.0 vf_token=2ab74924-c335-45f4-9b16-8569e5b08258";
  CHECK(h.fails(g, VFIO_GROUP_GET_DEVICE_FD, u64{0x10}) == EFAULT);
  CHECK(h.fails(g, VFIO_GROUP_GET_DEVICE_FD, other) == ENODEV);  // not in this group
  CHECK(h.fails(g, VFIO_GROUP_GET_DEVICE_FD, token) == EINVAL);  // not a PF or VF
  std::string page(5000, 'x');
  CHECK(h.fails(g, VFIO_GROUP_GET_DEVICE_FD, page.c_str()) == EINVAL);  // longer than a page
  CHECK(h.fails(g, VFIO_GROUP_GET_DEVICE_FD, good) == EINVAL);          // no container
  REQUIRE(set_container(h, g, c) == 0);
  CHECK(h.fails(g, VFIO_GROUP_GET_DEVICE_FD, good) == EINVAL);          // no IOMMU set
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  // Everything Linux checks has passed; the emulator cannot create the fd.
  CHECK(h.fails(g, VFIO_GROUP_GET_DEVICE_FD, good) == EOPNOTSUPP);
}
