// Device fds obtained through a group (what VFIO_GROUP_GET_DEVICE_FD returns in Linux), as the
// seccomp supervisor of `vfio-emu run` builds them: VFIO_EMU_GROUP_DEVICE names the cdev,
// VFIO_EMU_DEVICE_USE_GROUP turns an open cdev file into a group-path device file.
#include <catch2/catch.hpp>

#include "core/device.h"
#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"
#include "core/uapi/vfio_emu.h"
#include "tests/unit/core_harness.h"

using namespace vfio_emu;
using namespace vfio_emu::core;
using namespace vfio_emu::uapi;
using vfio_emu::test::Buffer;
using vfio_emu::test::Harness;

namespace {

constexpr u64 K4 = 4096;

int set_container(Harness& h, int group, int fd) {
  return h.fails(group, VFIO_GROUP_SET_CONTAINER, &fd);
}

int get_info(Harness& h, int dev) {
  vfio_device_info info{};
  info.argsz = sizeof(info);
  return h.fails(dev, VFIO_DEVICE_GET_INFO, &info);
}

// GET_DEVICE_FD the way the supervisor does it.
int device_fd(Harness& h, int group, const char* bdf) {
  const long n = h.ioctl(group, VFIO_EMU_GROUP_DEVICE, bdf);
  if (n < 0) return -1;
  const int dev = h.open("vfio/devices/vfio" + std::to_string(n));
  if (dev < 0) return -1;
  if (h.ioctl(dev, VFIO_EMU_DEVICE_USE_GROUP, static_cast<u64>(group)) != 0) {
    const int e = errno;
    h.close(dev);
    errno = e;
    return -1;
  }
  return dev;
}

}  // namespace

TEST_CASE("group path: VFIO_EMU_GROUP_DEVICE names the cdev", "[grouppath]") {
  Harness h;
  const int g = h.open("vfio/2");
  CHECK(h.ioctl(g, VFIO_EMU_GROUP_DEVICE, "0000:00:02.0") == 1);
  CHECK(h.fails(g, VFIO_EMU_GROUP_DEVICE, "0000:00:01.0") == ENODEV);
  CHECK(h.fails(g, VFIO_EMU_GROUP_DEVICE, u64{0x10}) == EFAULT);
}

TEST_CASE("group path: USE_GROUP checks as GET_DEVICE_FD does", "[grouppath]") {
  Harness h;
  const int g = h.open("vfio/1");
  const int c = h.open("vfio/vfio");
  const int dev = h.open("vfio/devices/vfio0");
  const int other = h.open("vfio/devices/vfio1");
  CHECK(h.fails(dev, VFIO_EMU_DEVICE_USE_GROUP, u64{9999}) == EBADF);
  CHECK(h.fails(dev, VFIO_EMU_DEVICE_USE_GROUP, static_cast<u64>(c)) == EBADFD);
  CHECK(h.fails(dev, VFIO_EMU_DEVICE_USE_GROUP, static_cast<u64>(g)) == EINVAL);  // no container
  REQUIRE(set_container(h, g, c) == 0);
  CHECK(h.fails(dev, VFIO_EMU_DEVICE_USE_GROUP, static_cast<u64>(g)) == EINVAL);  // no IOMMU
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  CHECK(h.fails(other, VFIO_EMU_DEVICE_USE_GROUP, static_cast<u64>(g)) == EINVAL);  // group 2's
  CHECK(get_info(h, dev) == EINVAL);  // nothing granted yet
  REQUIRE(h.ioctl(dev, VFIO_EMU_DEVICE_USE_GROUP, static_cast<u64>(g)) == 0);
  CHECK(h.fails(dev, VFIO_EMU_DEVICE_USE_GROUP, static_cast<u64>(g)) == EINVAL);  // in use
}

TEST_CASE("group path: the device fd works through the group's container", "[grouppath]") {
  Harness h;
  const int g = h.open("vfio/1");
  const int c = h.open("vfio/vfio");
  REQUIRE(set_container(h, g, c) == 0);
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  const int dev = device_fd(h, g, "0000:00:01.0");
  REQUIRE(dev >= 0);
  CHECK(get_info(h, dev) == 0);
  u16 vendor = 0;
  CHECK(h.pread(dev, &vendor, 2, vfio_pci_index_to_offset(VFIO_PCI_CONFIG_REGION_INDEX)) == 2);
  CHECK(vendor == 0x1b36);
  // cdev-only ioctls do not exist on it; BIND is refused; several fds per device are fine.
  vfio_device_attach_iommufd_pt at{sizeof(at), 0, 1, 0};
  CHECK(h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == ENOTTY);
  // ... before their argument is looked at (vfio_device_fops_unl_ioctl never reaches the cdev
  // handlers for them): a bad argsz, or no argument at all, is still ENOTTY.
  vfio_device_detach_iommufd_pt dt{};
  CHECK(h.fails(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt) == ENOTTY);
  at.argsz = 0;
  CHECK(h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) == ENOTTY);
  CHECK(h.fails(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, u64{0}) == ENOTTY);
  const int ictx = h.open("iommu");
  vfio_device_bind_iommufd b{};
  b.argsz = sizeof(b);
  b.iommufd = 1;
  CHECK(h.fails(dev, VFIO_DEVICE_BIND_IOMMUFD, &b) == EINVAL);
  const int dev2 = device_fd(h, g, "0000:00:01.0");
  CHECK(dev2 >= 0);
  // A cdev fd of the same device cannot bind while it is open through the group.
  h.close(g);  // (the group fd's release waits: see below)
  const int cdev = h.open("vfio/devices/vfio0");
  b.iommufd = ictx;
  CHECK(h.fails(cdev, VFIO_DEVICE_BIND_IOMMUFD, &b) == EBUSY);  // the group file is still held
  (void)dev2;
}

TEST_CASE("group path: device fds hold the group; UNSET_CONTAINER is EBUSY", "[grouppath]") {
  Harness h;
  const int g = h.open("vfio/1");
  const int c = h.open("vfio/vfio");
  REQUIRE(set_container(h, g, c) == 0);
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  const int dev = device_fd(h, g, "0000:00:01.0");
  REQUIRE(dev >= 0);
  CHECK(h.fails(g, VFIO_GROUP_UNSET_CONTAINER) == EBUSY);  // container_users != 1
  Buffer buf(K4);
  vfio_iommu_type1_dma_map m{sizeof(m), VFIO_DMA_MAP_FLAG_READ, buf.addr(), 0, K4};
  REQUIRE(h.ioctl(c, VFIO_IOMMU_MAP_DMA, &m) == 0);
  // Closing the group fd does not release the group while a device fd holds it.
  h.close(g);
  CHECK(h.emu.domains().size() == 1);
  CHECK(h.open("vfio/1") == -1);
  CHECK(errno == EBUSY);
  CHECK(get_info(h, dev) == 0);
  h.close(dev);  // the last device fd: now the group goes, and the container with it
  CHECK(h.emu.domains().empty());
  CHECK(h.emu.locked_memory().charged(getpid()) == 0);
  const int g2 = h.open("vfio/1");
  CHECK(g2 >= 0);
}

TEST_CASE("group path: a group set to an iommufd binds the device to it and attaches the "
          "compat IOAS", "[grouppath][iommufd]") {
  Harness h;
  const int fd = h.open("iommu");
  const int g = h.open("vfio/1");
  REQUIRE(set_container(h, g, fd) == 0);
  const int dev = device_fd(h, g, "0000:00:01.0");
  REQUIRE(dev >= 0);
  CHECK(h.emu.domains().size() == 1);  // the compat IOAS got a domain for the device
  Buffer buf(K4);
  vfio_iommu_type1_dma_map m{sizeof(m), VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                             buf.addr(), 0x100000, K4};
  REQUIRE(h.ioctl(fd, VFIO_IOMMU_MAP_DMA, &m) == 0);
  const auto t = h.emu.domains()[0]->hw->translate(0x100010, iommu::Access::kWrite);
  CHECK(t.ok());
  CHECK(t.output == buf.addr() + 0x10);
  h.close(dev);
  CHECK(h.emu.domains().empty());
}

TEST_CASE("group path: a device in a bad state cannot be opened", "[grouppath]") {
  std::string error;
  auto topo = Topology::parse(R"(
[[iommu]]
name = "dmar0"
model = "vtd"
[[group]]
id = 1
iommu = "dmar0"
devices = [{ bdf = "0000:00:01.0", fail_reset = true }]
)",
                              &error);
  REQUIRE(topo.has_value());
  Harness h(std::move(*topo));
  const int g = h.open("vfio/1");
  const int c = h.open("vfio/vfio");
  REQUIRE(set_container(h, g, c) == 0);
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  const int dev = device_fd(h, g, "0000:00:01.0");
  REQUIRE(dev >= 0);
  CHECK(h.fails(dev, VFIO_DEVICE_RESET) == EIO);  // the reset fails: bad state
  CHECK(device_fd(h, g, "0000:00:01.0") == -1);
  CHECK(errno == EIO);
}
