// The passive test device model (devices/testdev/): its config space, its BAR0 of plain memory,
// and its reset.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "devices/device_model.h"
#include "devices/testdev/testdev.h"

using namespace vfio_emu;
using namespace vfio_emu::devices;

TEST_CASE("testdev: ids, BAR0 and the writable bits of config space", "[devices][testdev]") {
  auto made = make_device_model("testdev", PciIds{0x1b36, 0x0005, 0x00ff00});
  REQUIRE(made.ok());
  DeviceModel& m = **made;
  CHECK(m.name() == "testdev");
  REQUIRE(m.config_size() == 256);
  std::vector<u8> cfg(m.config_size()), mask(m.config_size());
  m.power_on_config(cfg, mask);
  u16 vendor = 0, device = 0;
  std::memcpy(&vendor, &cfg[0], 2);
  std::memcpy(&device, &cfg[2], 2);
  CHECK(vendor == 0x1b36);
  CHECK(device == 0x0005);
  CHECK(cfg[0x0b] == 0x00);
  CHECK(cfg[0x0a] == 0xff);
  CHECK(cfg[0x3d] == 0x01);  // INTA#
  u32 bar_mask = 0;
  std::memcpy(&bar_mask, &mask[0x10], 4);
  CHECK(bar_mask == ~u32{TestDevice::kBar0Size - 1});
  CHECK(mask[0x00] == 0);  // ids are read-only

  CHECK(m.bar_size(0) == TestDevice::kBar0Size);
  for (u32 bar = 1; bar < 6; ++bar) CHECK(m.bar_size(bar) == 0);
  const u8 in[4] = {1, 2, 3, 4};
  m.bar_write(0, TestDevice::kBar0Size - 2, in, 4);  // cut at the end of the BAR
  u8 out[4] = {};
  m.bar_read(0, TestDevice::kBar0Size - 2, out, 4);
  CHECK(out[0] == 1);
  CHECK(out[1] == 2);
  m.reset();
  m.bar_read(0, TestDevice::kBar0Size - 2, out, 2);
  CHECK(out[0] == 0);
  CHECK(out[1] == 0);
}

TEST_CASE("device models: an unknown name is EINVAL", "[devices]") {
  auto made = make_device_model("e1000", PciIds{});
  REQUIRE_FALSE(made.ok());
  CHECK(made.error() == EINVAL);
  CHECK(known_models() == "testdev, ioat, pci-testdev");
}
