// enable_unsafe_noiommu_mode: a device behind no IOMMU gets a no-IOMMU group (vfio/noiommu-N) and
// a cdev noiommu-vfioN, for CAP_SYS_RAWIO only; containers of no-IOMMU groups take only the
// vfio-noiommu driver (VFIO_NOIOMMU_IOMMU), which serves no ioctl; an iommufd as their container
// enters no-IOMMU mode. Linux 7.3: drivers/vfio/{group,container,iommufd,device_cdev}.c and
// drivers/iommu/iommufd/vfio_compat.c.
#include <catch2/catch.hpp>

#include <linux/capability.h>

#include <string>

#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"
#include "core/uapi/vfio_emu.h"
#include "tests/unit/core_harness.h"

using namespace vfio_emu;
using namespace vfio_emu::core;
using namespace vfio_emu::uapi;
using vfio_emu::test::Harness;

namespace {

// Group 1 behind VT-d (cdev vfio0), no-IOMMU group 7 (cdev 1), group 2 behind VT-d (cdev 2).
Topology machine(bool mode) {
  std::string text = R"(
[[iommu]]
name = "dmar0"
model = "vtd"
[[group]]
id = 1
iommu = "dmar0"
devices = ["0000:00:01.0"]
[[group]]
id = 7
noiommu = true
devices = ["0000:00:06.0"]
[[group]]
id = 2
iommu = "dmar0"
devices = ["0000:00:02.0"]
[limits]
enable_unsafe_noiommu_mode = )" + std::string(mode ? "true" : "false") + "\n";
  std::string error;
  auto t = Topology::parse(text, &error);
  INFO(error);
  REQUIRE(t.has_value());
  return std::move(*t);
}

bool has_node(const Harness& h, const std::string& path) { return h.emu.node(path) != nullptr; }

u32 st_flags(Harness& h, int group) {
  vfio_group_status st{};
  st.argsz = sizeof(st);
  REQUIRE(h.ioctl(group, VFIO_GROUP_GET_STATUS, &st) == 0);
  return st.flags;
}

// GET_DEVICE_FD as `vfio-emu run` serves it: the cdev file, made a group-path file.
int group_device_fd(Harness& h, int group, const char* cdev) {
  const int dev = h.open(cdev);
  REQUIRE(dev >= 0);
  const int e = h.fails(dev, VFIO_EMU_DEVICE_USE_GROUP, static_cast<u64>(group));
  return e == 0 ? dev : -e;
}

}  // namespace

TEST_CASE("noiommu: off, a device behind no IOMMU has no node", "[noiommu]") {
  Harness h(machine(false));
  CHECK_FALSE(has_node(h, "vfio/noiommu-7"));
  CHECK_FALSE(has_node(h, "vfio/7"));
  // Its cdev number is not taken: the devices after it close up (vfio_device_set_name at probe).
  CHECK(has_node(h, "vfio/devices/vfio0"));
  CHECK(has_node(h, "vfio/devices/vfio1"));
  CHECK_FALSE(has_node(h, "vfio/devices/vfio2"));
  CHECK(h.emu.group_by_id(2)->devices().front()->cdev_name() == "vfio1");
  const int c = h.open("vfio/vfio");
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU) == 0);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 1);
}

TEST_CASE("noiommu: nodes and CAP_SYS_RAWIO at open", "[noiommu]") {
  Harness h(machine(true));
  REQUIRE(has_node(h, "vfio/noiommu-7"));
  CHECK_FALSE(has_node(h, "vfio/7"));
  REQUIRE(has_node(h, "vfio/devices/noiommu-vfio1"));
  CHECK_FALSE(has_node(h, "vfio/devices/vfio1"));
  CHECK(has_node(h, "vfio/devices/vfio2"));
  // vfio_group_fops_open / vfio_device_fops_cdev_open: EPERM without CAP_SYS_RAWIO.
  CHECK(h.open("vfio/noiommu-7") == -1);
  CHECK(errno == EPERM);
  CHECK(h.open("vfio/devices/noiommu-vfio1") == -1);
  CHECK(errno == EPERM);
  h.capabilities.insert(CAP_SYS_RAWIO);
  const int g = h.open("vfio/noiommu-7");
  CHECK(g >= 0);
  // EPERM comes before EBUSY: a second open without the capability is EPERM, with it EBUSY.
  h.capabilities.erase(CAP_SYS_RAWIO);
  CHECK(h.open("vfio/noiommu-7") == -1);
  CHECK(errno == EPERM);
  h.capabilities.insert(CAP_SYS_RAWIO);
  CHECK(h.open("vfio/noiommu-7") == -1);
  CHECK(errno == EBUSY);
  vfio_group_status st{};
  st.argsz = sizeof(st);
  REQUIRE(h.ioctl(g, VFIO_GROUP_GET_STATUS, &st) == 0);
  CHECK(st.flags == VFIO_GROUP_FLAGS_VIABLE);
}

TEST_CASE("noiommu: a container of no-IOMMU groups", "[noiommu]") {
  Harness h(machine(true));
  h.capabilities.insert(CAP_SYS_RAWIO);
  const int c = h.open("vfio/vfio");
  // An empty container: vfio-noiommu answers for its type while the mode is on.
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU) == 1);
  CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 1);
  const int g = h.open("vfio/noiommu-7");
  REQUIRE(g >= 0);

  SECTION("SET_CONTAINER needs CAP_SYS_RAWIO") {
    h.capabilities.erase(CAP_SYS_RAWIO);
    CHECK(h.fails(g, VFIO_GROUP_SET_CONTAINER, &c) == EPERM);
  }
  SECTION("no-IOMMU and IOMMU groups do not mix, either way round") {
    REQUIRE(h.fails(g, VFIO_GROUP_SET_CONTAINER, &c) == 0);
    const int g1 = h.open("vfio/1");
    CHECK(h.fails(g1, VFIO_GROUP_SET_CONTAINER, &c) == EPERM);
    const int c2 = h.open("vfio/vfio");
    const int g2 = h.open("vfio/2");
    REQUIRE(h.fails(g2, VFIO_GROUP_SET_CONTAINER, &c2) == 0);
    REQUIRE(h.fails(g, VFIO_GROUP_UNSET_CONTAINER) == 0);
    CHECK(h.fails(g, VFIO_GROUP_SET_CONTAINER, &c2) == EPERM);
    // A type1 container never answers for vfio-noiommu, nor takes its type.
    CHECK(h.ioctl(c2, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU) == 0);
    CHECK(h.fails(c2, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU) == ENODEV);
  }
  SECTION("only VFIO_NOIOMMU_IOMMU, with CAP_SYS_RAWIO; then every ioctl is ENOTTY") {
    REQUIRE(h.fails(g, VFIO_GROUP_SET_CONTAINER, &c) == 0);
    CHECK(st_flags(h, g) == (VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE));
    // Only vfio-noiommu is allowed now.
    CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU) == 1);
    CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 0);
    CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == ENODEV);
    CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU) == ENODEV);
    h.capabilities.erase(CAP_SYS_RAWIO);
    CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU) == EPERM);
    // GET_DEVICE_FD before SET_IOMMU: EINVAL (vfio_group_has_iommu).
    h.capabilities.insert(CAP_SYS_RAWIO);
    CHECK(group_device_fd(h, g, "vfio/devices/noiommu-vfio1") == -EINVAL);
    REQUIRE(h.fails(c, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU) == 0);
    CHECK(h.fails(c, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU) == EINVAL);  // already set
    CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU) == 1);
    CHECK(h.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) == 0);
    vfio_iommu_type1_info info{};
    info.argsz = sizeof(info);
    CHECK(h.fails(c, VFIO_IOMMU_GET_INFO, &info) == ENOTTY);
    vfio_iommu_type1_dma_map map{};
    map.argsz = sizeof(map);
    CHECK(h.fails(c, VFIO_IOMMU_MAP_DMA, &map) == ENOTTY);
    // The device: regions and interrupts as any other.
    const int dev = group_device_fd(h, g, "vfio/devices/noiommu-vfio1");
    REQUIRE(dev >= 0);
    vfio_device_info di{};
    di.argsz = sizeof(di);
    REQUIRE(h.ioctl(dev, VFIO_DEVICE_GET_INFO, &di) == 0);
    CHECK((di.flags & VFIO_DEVICE_FLAGS_PCI) != 0);
    CHECK(di.num_regions >= 7);
    // A device fd holds the group in its container.
    CHECK(h.fails(g, VFIO_GROUP_UNSET_CONTAINER) == EBUSY);
    h.close(dev);
    CHECK(h.fails(g, VFIO_GROUP_UNSET_CONTAINER) == 0);
  }
}

TEST_CASE("noiommu: an iommufd as the container", "[noiommu]") {
  Harness h(machine(true));
  h.capabilities.insert(CAP_SYS_RAWIO);
  const int fd = h.open("iommu");
  const int g = h.open("vfio/noiommu-7");
  REQUIRE(g >= 0);

  SECTION("no-IOMMU mode: the type1 types are gone, NOIOMMU needs CAP_SYS_RAWIO") {
    REQUIRE(h.fails(g, VFIO_GROUP_SET_CONTAINER, &fd) == 0);
    CHECK(h.ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 0);
    CHECK(h.ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL) == 0);
    CHECK(h.ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU) == 1);
    CHECK(h.fails(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == EINVAL);
    h.capabilities.erase(CAP_SYS_RAWIO);
    CHECK(h.fails(fd, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU) == EPERM);
    // vfio_df_group_open: the first open through an iommufd needs CAP_SYS_RAWIO (the cdev was
    // opened with it, as `run`'s supervisor does).
    h.capabilities.insert(CAP_SYS_RAWIO);
    const int early = h.open("vfio/devices/noiommu-vfio1");
    REQUIRE(early >= 0);
    h.capabilities.erase(CAP_SYS_RAWIO);
    CHECK(h.fails(early, VFIO_EMU_DEVICE_USE_GROUP, static_cast<u64>(g)) == EPERM);
    h.close(early);
    h.capabilities.insert(CAP_SYS_RAWIO);
    CHECK(h.fails(fd, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU) == 0);
    // An IOMMU group cannot join it any more (iommufd_vfio_compat_ioas_create).
    const int g1 = h.open("vfio/1");
    CHECK(h.fails(g1, VFIO_GROUP_SET_CONTAINER, &fd) == EINVAL);
    const int dev = group_device_fd(h, g, "vfio/devices/noiommu-vfio1");
    REQUIRE(dev >= 0);
    vfio_device_info di{};
    di.argsz = sizeof(di);
    CHECK(h.ioctl(dev, VFIO_DEVICE_GET_INFO, &di) == 0);
  }
  SECTION("an iommufd with a compat IOAS refuses a no-IOMMU group") {
    const int g1 = h.open("vfio/1");
    REQUIRE(h.fails(g1, VFIO_GROUP_SET_CONTAINER, &fd) == 0);
    CHECK(h.fails(g, VFIO_GROUP_SET_CONTAINER, &fd) == EINVAL);
  }
  SECTION("a compat IOAS set afterwards: the device's first open is EPERM") {
    REQUIRE(h.fails(g, VFIO_GROUP_SET_CONTAINER, &fd) == 0);
    iommu_ioas_alloc alloc{};
    alloc.size = sizeof(alloc);
    REQUIRE(h.ioctl(fd, IOMMU_IOAS_ALLOC, &alloc) == 0);
    iommu_vfio_ioas set{};
    set.size = sizeof(set);
    set.op = IOMMU_VFIO_IOAS_SET;
    set.ioas_id = alloc.out_ioas_id;
    REQUIRE(h.ioctl(fd, IOMMU_VFIO_IOAS, &set) == 0);
    CHECK(group_device_fd(h, g, "vfio/devices/noiommu-vfio1") == -EPERM);
  }
}

TEST_CASE("noiommu: the cdev path binds, and has no IOMMU", "[noiommu]") {
  Harness h(machine(true));
  h.capabilities.insert(CAP_SYS_RAWIO);
  const int dev = h.open("vfio/devices/noiommu-vfio1");
  REQUIRE(dev >= 0);
  const int fd = h.open("iommu");
  vfio_device_bind_iommufd b{};
  b.argsz = sizeof(b);
  b.iommufd = fd;
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &b) == 0);
  iommu_hw_info hw{};
  hw.size = sizeof(hw);
  hw.dev_id = b.out_devid;
  CHECK(h.fails(fd, IOMMU_GET_HW_INFO, &hw) == EOPNOTSUPP);  // 7.3: iommufd_device_is_noiommu
  iommu_ioas_alloc alloc{};
  alloc.size = sizeof(alloc);
  REQUIRE(h.ioctl(fd, IOMMU_IOAS_ALLOC, &alloc) == 0);
  vfio_device_attach_iommufd_pt at{};
  at.argsz = sizeof(at);
  at.pt_id = alloc.out_ioas_id;
  // 7.3 attaches it to a software page table for IOMMU_IOAS_NOIOMMU_GET_PA: not emulated.
  CHECK(h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == EOPNOTSUPP);
  // The group cannot be opened while its device is bound through the cdev.
  CHECK(h.open("vfio/noiommu-7") == -1);
  CHECK(errno == EBUSY);
}

TEST_CASE("noiommu: topology rules", "[noiommu][topology]") {
  std::string error;
  CHECK_FALSE(Topology::parse("[[iommu]]\nname = \"u\"\nmodel = \"vtd\"\n[[group]]\nid = 0\n"
                              "noiommu = true\niommu = \"u\"\ndevices = [\"0000:00:06.0\"]\n",
                              &error));
  CHECK(error.find("a 'noiommu' group has no 'iommu'") != std::string::npos);
  CHECK_FALSE(Topology::parse("[[group]]\nid = 0\nnoiommu = true\n"
                              "devices = [\"0000:00:06.0\", \"0000:00:07.0\"]\n", &error));
  CHECK(error.find("holds exactly one device") != std::string::npos);
  CHECK_FALSE(Topology::parse("[[group]]\nid = 0\nnoiommu = 1\ndevices = [\"0000:00:06.0\"]\n",
                              &error));
  CHECK(error.find("'noiommu' must be true or false") != std::string::npos);
  CHECK_FALSE(Topology::parse("[[group]]\nid = 0\nnoiommu = true\ndevices = [\"0000:00:06.0\"]\n"
                              "[limits]\nenable_unsafe_noiommu_mode = \"Y\"\n", &error));
  CHECK(error.find("'enable_unsafe_noiommu_mode' must be true or false") != std::string::npos);
  // The built-in machine has one device behind no IOMMU, as no-IOMMU group 0.
  Topology t = Topology::builtin();
  t.limits.enable_unsafe_noiommu_mode = true;
  Harness h(std::move(t));
  CHECK(has_node(h, "vfio/noiommu-0"));
  CHECK(has_node(h, "vfio/devices/noiommu-vfio5"));
  Harness off(Topology::builtin());
  CHECK_FALSE(has_node(off, "vfio/noiommu-0"));
  CHECK_FALSE(has_node(off, "vfio/devices/vfio5"));
}
