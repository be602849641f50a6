// How VFIO_GROUP_GET_DEVICE_FD and VFIO_EMU_GROUP_DEVICE find a device by name, as Linux's
// vfio_device_get_from_name with vfio_pci_core_match: the PCI address, then nothing or spaces and
// options; "vf_token=<uuid>" is the one option, and a device that is neither PF nor VF refuses it.
#include <string>

#include "core/uapi/vfio_emu.h"
#include "tests/unit/iommufd/iommufd_helpers.h"

using namespace vfio_emu;
using namespace vfio_emu::test;

namespace {

constexpr const char* kUuid = "bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3";

// Group 1 (device 0000:00:01.0) in a type1 container, so GET_DEVICE_FD gets past the name.
struct GroupInContainer {
  explicit GroupInContainer(Harness& h) : group(h.open("vfio/1")), container(h.open("vfio/vfio")) {
    REQUIRE(h.ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) == 0);
    REQUIRE(h.ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  }
  int group;
  int container;
};

}  // namespace

TEST_CASE("device names: spaces after the address match", "[group][name]") {
  Harness h;
  GroupInContainer g(h);
  for (const std::string name : {"0000:00:01.0", "0000:00:01.0 ", "0000:00:01.0  ",
                                 "0000:00:01.0          "}) {
    INFO('"' << name << '"');
    // All checks pass: what is left is the fd a daemon cannot create.
    CHECK(h.fails(g.group, VFIO_GROUP_GET_DEVICE_FD, name.c_str()) == EOPNOTSUPP);
    CHECK(h.ioctl(g.group, VFIO_EMU_GROUP_DEVICE, name.c_str()) == 0);
  }
}

TEST_CASE("device names: anything else right after the address is another name",
          "[group][name]") {
  Harness h;
  GroupInContainer g(h);
  for (const std::string name : {"0000:00:01.00", "0000:00:01.0\t", "0000:00:01.0x",
                                 "0000:00:01", "", " 0000:00:01.0", "0000:00:01.0\tvf_token=x",
                                 "0000:00:02.0", "0000:00:02.0 "}) {
    INFO('"' << name << '"');
    CHECK(h.fails(g.group, VFIO_GROUP_GET_DEVICE_FD, name.c_str()) == ENODEV);
    CHECK(h.fails(g.group, VFIO_EMU_GROUP_DEVICE, name.c_str()) == ENODEV);
  }
}

TEST_CASE("device names: options are EINVAL for a device that is neither PF nor VF",
          "[group][name]") {
  Harness h;
  GroupInContainer g(h);
  const std::string bdf = "0000:00:01.0";
  for (const std::string& opts :
       {" vf_token=" + std::string(kUuid),                          // a good token: not a PF/VF
        "   vf_token=" + std::string(kUuid) + "  ",                  // spaces around it
        " vf_token=" + std::string(kUuid).substr(0, 35),             // shorter than a UUID
        " vf_token=" + std::string(kUuid).replace(8, 1, "x"),        // not a UUID
        " vf_token=" + std::string(kUuid) + "x",                     // junk after it
        " vf_token=" + std::string(kUuid) + " vf_token=" + kUuid,    // twice
        std::string(" foo"), std::string(" vf_token"), " VF_TOKEN=" + std::string(kUuid)}) {
    INFO('"' << bdf + opts << '"');
    CHECK(h.fails(g.group, VFIO_GROUP_GET_DEVICE_FD, (bdf + opts).c_str()) == EINVAL);
    CHECK(h.fails(g.group, VFIO_EMU_GROUP_DEVICE, (bdf + opts).c_str()) == EINVAL);
  }
  // The option is looked at only for the device the address names.
  CHECK(h.fails(g.group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:09.0 foo") == ENODEV);
}

TEST_CASE("device names: the name comes before the container checks", "[group][name]") {
  Harness h;
  const int group = h.open("vfio/1");
  CHECK(h.fails(group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:01.0x") == ENODEV);
  CHECK(h.fails(group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:01.0 foo") == EINVAL);
  CHECK(h.fails(group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:01.0  ") == EINVAL);  // no container
  CHECK(h.ioctl(group, VFIO_EMU_GROUP_DEVICE, "0000:00:01.0  ") == 0);
}
