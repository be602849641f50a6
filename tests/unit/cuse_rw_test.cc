// What read(2)/write(2) on a CUSE node answer (cuse/transport.h: cuse_rw_check). CUSE sends
// position 0 on every read and write, so a bound device must not silently serve region 0 at 0.
#include <catch2/catch.hpp>

#include "core/uapi/vfio.h"
#include "cuse/transport.h"
#include "tests/unit/core_harness.h"

namespace vfio_emu::test {
namespace {

using namespace vfio_emu::uapi;

TEST_CASE("CUSE read/write: EINVAL where Linux says so, ESPIPE for a bound device", "[cuse][rw]") {
  Harness h;
  const int c = h.open("vfio/vfio");
  const int dev = h.open("vfio/devices/vfio0");
  const int fd = h.open("iommu");
  REQUIRE((c >= 0 && dev >= 0 && fd >= 0));
  auto check = [&](int f, std::size_t size, bool write) {
    Status st = cuse::cuse_rw_check(h.emu, *h.file(f), "node", size, 0x1234, write);
    return st ? 0 : st.error();
  };
  // Not a device, or a device not yet bound: EINVAL, as Linux answers before any region.
  CHECK(check(c, 8, false) == EINVAL);
  CHECK(check(c, 8, true) == EINVAL);
  CHECK(check(dev, 8, false) == EINVAL);
  CHECK(check(dev, 8, true) == EINVAL);

  vfio_device_bind_iommufd b{};
  b.argsz = sizeof(b);
  b.iommufd = fd;
  REQUIRE(h.ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &b) == 0);
  // Bound: the offset is lost on the way, so no region is touched.
  CHECK(check(dev, 8, false) == ESPIPE);
  CHECK(check(dev, 8, true) == ESPIPE);
  CHECK(check(dev, 0, false) == 0);
  CHECK(check(dev, 0, true) == 0);
}

}  // namespace
}  // namespace vfio_emu::test
