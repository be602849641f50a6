// A VT-d unit without interrupt remapping (topology key interrupt_remapping = false): type1's
// attach and iommufd's bind refuse its devices with EPERM unless allow_unsafe_interrupts is set
// ([limits], --allow-unsafe-interrupts), as Linux's vfio_iommu_type1 and iommufd modules do.
#include <catch2/catch.hpp>

#include <string>

#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"
#include "iommu/vtd/vtd.h"
#include "tests/unit/core_harness.h"

using namespace vfio_emu;
using namespace vfio_emu::core;
using namespace vfio_emu::uapi;
using vfio_emu::test::Harness;

namespace {

Topology machine(bool remapping, bool allow) {
  std::string text = R"(
[[iommu]]
name = "dmar0"
model = "vtd"
interrupt_remapping = )" + std::string(remapping ? "true" : "false") + R"(
[[group]]
id = 1
iommu = "dmar0"
devices = ["0000:00:01.0"]
[limits]
allow_unsafe_interrupts = )" + std::string(allow ? "true" : "false") + "\n";
  std::string error;
  auto t = Topology::parse(text, &error);
  INFO(error);
  REQUIRE(t.has_value());
  return std::move(*t);
}

int set_iommu(Harness& h) {
  const int c = h.open("vfio/vfio");
  const int g = h.open("vfio/1");
  REQUIRE(h.fails(g, VFIO_GROUP_SET_CONTAINER, &c) == 0);
  return h.fails(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
}

int bind(Harness& h) {
  const int dev = h.open("vfio/devices/vfio0");
  const int fd = h.open("iommu");
  vfio_device_bind_iommufd b{};
  b.argsz = sizeof(b);
  b.iommufd = fd;
  return h.fails(dev, VFIO_DEVICE_BIND_IOMMUFD, &b);
}

}  // namespace

TEST_CASE("unsafe interrupts: a unit without interrupt remapping", "[limits][msi]") {
  SECTION("refused by type1 and iommufd") {
    Harness h(machine(false, false));
    CHECK(set_iommu(h) == EPERM);
    CHECK(h.emu.domains().empty());  // the fresh domain went with the failed attach
    Harness h2(machine(false, false));
    CHECK(bind(h2) == EPERM);
  }
  SECTION("allowed by allow_unsafe_interrupts") {
    Harness h(machine(false, true));
    CHECK(set_iommu(h) == 0);
    Harness h2(machine(false, true));
    CHECK(bind(h2) == 0);
  }
  SECTION("interrupt remapping: no parameter needed") {
    Harness h(machine(true, false));
    CHECK(set_iommu(h) == 0);
    Harness h2(machine(true, false));
    CHECK(bind(h2) == 0);
  }
}

TEST_CASE("unsafe interrupts: ECAP.IR and the topology keys", "[limits][msi]") {
  iommu::vtd::VtdConfig cfg;
  cfg.interrupt_remapping = false;
  auto off = iommu::vtd::VtdUnit::create(cfg).take();
  cfg.interrupt_remapping = true;
  auto on = iommu::vtd::VtdUnit::create(cfg).take();
  CHECK(((off->ecap_reg() >> 3) & 1) == 0);  // ECAP.IR
  CHECK(((on->ecap_reg() >> 3) & 1) == 1);
  CHECK_FALSE(off->isolated_msi());
  std::string error;
  CHECK_FALSE(Topology::parse("[[iommu]]\nname = \"u\"\nmodel = \"vtd\"\ninterrupt_remapping = 1\n"
                              "[[group]]\nid = 1\niommu = \"u\"\ndevices = [\"0000:00:01.0\"]\n",
                              &error));
  CHECK(error.find("'interrupt_remapping' must be true or false") != std::string::npos);
  CHECK_FALSE(Topology::parse("[[iommu]]\nname = \"u\"\nmodel = \"vtd\"\n[[group]]\nid = 1\n"
                              "iommu = \"u\"\ndevices = [\"0000:00:01.0\"]\n[limits]\n"
                              "allow_unsafe_interrupts = \"yes\"\n", &error));
  CHECK(error.find("'allow_unsafe_interrupts' must be true or false") != std::string::npos);
}
