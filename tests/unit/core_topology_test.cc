// The topology file and the nodes it gives.
#include <catch2/catch.hpp>

#include "core/emulator.h"
#include "iommu/tce/tce.h"
#include "iommu/vtd/vtd.h"

using namespace vfio_emu;
using namespace vfio_emu::core;

namespace {

std::string parse_error(const std::string& text) {
  std::string error;
  auto t = Topology::parse(text, &error);
  return t ? std::string("(parsed)") : error;
}

}  // namespace

TEST_CASE("topology: sizes", "[topology]") {
  u64 v = 0;
  CHECK((parse_size("4K", &v) && v == 4096));
  CHECK((parse_size("64k", &v) && v == 65536));
  CHECK((parse_size("2M", &v) && v == (u64{2} << 20)));
  CHECK((parse_size("1G", &v) && v == (u64{1} << 30)));
  CHECK((parse_size("16GiB", &v) && v == (u64{16} << 30)));
  CHECK((parse_size("12345", &v) && v == 12345));
  CHECK_FALSE(parse_size("", &v));
  CHECK_FALSE(parse_size("G", &v));
  CHECK_FALSE(parse_size("0", &v));
  CHECK_FALSE(parse_size("4X", &v));
  CHECK_FALSE(parse_size("4KB2", &v));
  CHECK_FALSE(parse_size("99999999999999999999", &v));
  CHECK_FALSE(parse_size("16777216T", &v));  // 2^24 TiB = 2^64 bytes does not fit
  CHECK((parse_size("16777215T", &v) && v == (u64{16777215} << 40)));
}

TEST_CASE("topology: the built-in machine", "[topology]") {
  Emulator emu(Topology::builtin());
  std::vector<std::string> paths;
  for (const NodeInfo& n : emu.nodes()) paths.push_back(n.path);
  CHECK(paths == std::vector<std::string>{"vfio/vfio", "vfio/1", "vfio/2", "vfio/3", "vfio/4",
                                          "vfio/5", "vfio/devices/vfio0", "vfio/devices/vfio1",
                                          "vfio/devices/vfio2", "vfio/devices/vfio3",
                                          "vfio/devices/vfio4", "iommu"});
  CHECK(emu.node("vfio/vfio")->mode == 0666);
  CHECK(emu.node("iommu")->mode == 0660);  // Linux: iommu_misc_dev.mode
  CHECK(emu.node("vfio/1")->mode == 0600);
  CHECK(emu.node("vfio/devices/vfio0")->mode == 0600);
  REQUIRE(emu.group_by_id(1) != nullptr);
  CHECK(emu.group_by_id(1)->unit()->name() == "dmar0");
  CHECK(emu.group_by_id(3)->model() == iommu::Model::kTce);
  CHECK(emu.group_by_id(4)->model() == iommu::Model::kNop);
  CHECK(emu.device_by_cdev(2)->spec().bdf == "0001:00:00.0");
  // An I/OAT DMA engine in a group of its own on the VT-d unit.
  CHECK(emu.group_by_id(5)->unit()->name() == "dmar0");
  CHECK(emu.device_by_cdev(4)->spec().model == "ioat");
  CHECK(emu.device_by_cdev(4)->model->name() == "ioat");
  CHECK(emu.device_by_cdev(0)->model->name() == "testdev");
  const auto& vtd = static_cast<const iommu::vtd::VtdUnit&>(*emu.group_by_id(1)->unit());
  CHECK(vtd.config().aw_bits == 48);
  CHECK(vtd.page_sizes() == 0x40201000);
  REQUIRE(vtd.reserved_regions().size() == 1);
  CHECK(vtd.reserved_regions()[0] == iommu::IovaRange{0xfee00000, 0xfeefffff});
  const auto& tce = static_cast<const iommu::tce::TceUnit&>(*emu.group_by_id(3)->unit());
  CHECK(tce.config().dma32_window_size == u64{1} << 30);
  CHECK(tce.config().max_windows == 2);
  CHECK(tce.config().max_levels == 5);
}

TEST_CASE("topology: a full file", "[topology]") {
  std::string error;
  auto t = Topology::parse(R"(
[[iommu]]
name = "dmar0"
model = "vtd"
aw_bits = 57
page_sizes = ["4K", "2M"]
max_domains = 64
reserved = [{ first = 0xfee00000, last = 0xfeefffff }, { first = 0x0, last = 0xfff }]
split = "refuse"

[[iommu]]
name = "phb0"
model = "tce"
dma32_window_size = "2G"
page_sizes = ["4K", "64K", "16M"]
max_windows = 2
max_levels = 3
ddw_start = 0x0800000000000000

[[iommu]]
name = "none"
model = "nop"

[[group]]
id = 26
iommu = "dmar0"
devices = ["0000:06:0d.0", { bdf = "0000:06:0d.1", vendor = 0x8086, device = 0x10ca, fail_reset = true }]

[[group]]
id = 7
iommu = "phb0"
devices = ["0001:00:00.0"]
mode = 0o660
uid = 1000
gid = 100
)",
                           &error);
  INFO(error);
  REQUIRE(t.has_value());
  REQUIRE(t->units.size() == 3);
  const auto& vtd = static_cast<const iommu::vtd::VtdUnit&>(*t->units[0]);
  CHECK(vtd.config().aw_bits == 57);
  CHECK(vtd.config().page_2m);
  CHECK_FALSE(vtd.config().page_1g);
  CHECK(vtd.config().max_domains == 64);
  CHECK(vtd.config().split == iommu::SplitPolicy::kRefuse);
  CHECK(vtd.reserved_regions().size() == 2);
  const auto& tce = static_cast<const iommu::tce::TceUnit&>(*t->units[1]);
  CHECK(tce.config().dma32_window_size == u64{2} << 30);
  CHECK(tce.config().page_sizes == ((u64{1} << 12) | (u64{1} << 16) | (u64{1} << 24)));
  CHECK(tce.config().max_levels == 3);
  REQUIRE(t->groups.size() == 2);
  CHECK(t->groups[0].id == 26);
  REQUIRE(t->groups[0].devices.size() == 2);
  CHECK(t->groups[0].devices[1].vendor == 0x8086);
  CHECK(t->groups[0].devices[1].fail_reset);
  CHECK(t->groups[0].devices[1].model == "testdev");  // the default
  CHECK(t->groups[0].devices[1].cdev_index == 1);
  CHECK(t->groups[1].devices[0].cdev_index == 2);
  CHECK(t->groups[1].mode == 0660u);
  CHECK(t->groups[1].uid == 1000u);
  CHECK_FALSE(t->groups[0].mode.has_value());
  Emulator emu(std::move(*t));
  CHECK(emu.node("vfio/26") != nullptr);
  CHECK(emu.node("vfio/26")->mode == 0600);
  CHECK_FALSE(emu.node("vfio/26")->uid.has_value());
  // A group's settings apply to its node and to its devices' cdev nodes.
  CHECK(emu.node("vfio/7")->mode == 0660);
  CHECK(emu.node("vfio/devices/vfio2")->mode == 0660);
  CHECK(emu.node("vfio/devices/vfio2")->uid == 1000u);
  CHECK(emu.node("vfio/devices/vfio2")->gid == 100u);
}

TEST_CASE("topology: errors name what is wrong", "[topology]") {
  const std::string unit = "[[iommu]]\nname = \"u\"\nmodel = \"vtd\"\n";
  const std::string group = "[[group]]\nid = 1\niommu = \"u\"\ndevices = [\"0000:00:01.0\"]\n";
  CHECK(parse_error(unit + group) == "(parsed)");
  CHECK_THAT(parse_error("[[iommu]\n"), Catch::Contains("line 1"));
  CHECK_THAT(parse_error(unit), Catch::Contains("no [[group]]"));
  CHECK_THAT(parse_error("[[iommu]]\nmodel = \"vtd\"\n" + group), Catch::Contains("'name'"));
  CHECK_THAT(parse_error("[[iommu]]\nname = \"u\"\nmodel = \"amd\"\n" + group),
             Catch::Contains("model must be"));
  CHECK_THAT(parse_error(unit + "aw_bits = 40\n" + group), Catch::Contains("aw_bits"));
  CHECK_THAT(parse_error(unit + "max_domains = 100\n" + group), Catch::Contains("max_domains"));
  CHECK_THAT(parse_error(unit + "page_sizes = [\"2M\"]\n" + group), Catch::Contains("\"4K\""));
  CHECK_THAT(parse_error(unit + "page_sizes = [\"3K\"]\n" + group),
             Catch::Contains("power-of-two"));
  CHECK_THAT(parse_error(unit + "reserved = [{ first = 2, last = 1 }]\n" + group),
             Catch::Contains("first <= last"));
  CHECK_THAT(parse_error(unit + "split = \"maybe\"\n" + group), Catch::Contains("'split'"));
  CHECK_THAT(parse_error(unit + group + "mode = 0o17777\n"), Catch::Contains("'mode'"));
  CHECK_THAT(parse_error(unit + group + "uid = -1\n"), Catch::Contains("'uid'"));
  CHECK_THAT(parse_error(unit + unit + group), Catch::Contains("defined twice"));
  CHECK_THAT(parse_error(unit + "[[group]]\nid = 1\niommu = \"x\"\ndevices = [\"0000:00:01.0\"]\n"),
             Catch::Contains("'iommu' must name"));
  CHECK_THAT(parse_error(unit + "[[group]]\nid = 1\niommu = \"u\"\ndevices = [\"00:01.0\"]\n"),
             Catch::Contains("not a PCI address"));
  CHECK_THAT(parse_error(unit + "[[group]]\nid = 1\niommu = \"u\"\ndevices = []\n"),
             Catch::Contains("at least one"));
  CHECK_THAT(parse_error(unit + group + group), Catch::Contains("defined twice"));
  const std::string with_model = "[[group]]\nid = 1\niommu = \"u\"\ndevices = [{ bdf = "
                                 "\"0000:00:01.0\", model = ";
  CHECK(parse_error(unit + with_model + "\"testdev\" }]\n") == "(parsed)");
  CHECK_THAT(parse_error(unit + with_model + "\"e1000\" }]\n"),
             Catch::Contains("unknown device model 'e1000' (known: testdev, ioat, pci-testdev)"));
  CHECK_THAT(parse_error(unit + with_model + "3 }]\n"), Catch::Contains("'model' must be a string"));
  CHECK_THAT(parse_error(unit + group +
                         "[[group]]\nid = 2\niommu = \"u\"\ndevices = [\"0000:00:01.0\"]\n"),
             Catch::Contains("already in another group"));
  CHECK_THAT(parse_error("[[iommu]]\nname = \"t\"\nmodel = \"tce\"\ndma32_window_size = \"3G\"\n"
                         "[[group]]\nid = 1\niommu = \"t\"\ndevices = [\"0000:00:01.0\"]\n"),
             Catch::Contains("power of two"));
  CHECK_THAT(parse_error("[[iommu]]\nname = \"t\"\nmodel = \"tce\"\nmax_levels = 6\n"
                         "[[group]]\nid = 1\niommu = \"t\"\ndevices = [\"0000:00:01.0\"]\n"),
             Catch::Contains("max_levels"));
}

TEST_CASE("topology: [limits]", "[topology][limits]") {
  const std::string machine = "[[iommu]]\nname = \"u\"\nmodel = \"vtd\"\n"
                              "[[group]]\nid = 1\niommu = \"u\"\ndevices = [\"0000:00:01.0\"]\n";
  std::string error;
  auto plain = Topology::parse(machine, &error);
  REQUIRE(plain);
  const Limits defaults;
  CHECK(plain->limits.dma_entry_limit == 65535);
  CHECK(plain->limits.table_memory == u64{1} << 30);
  CHECK(plain->limits.iommufd_objects == 65536);
  CHECK(plain->limits.ioas_mappings == u32{1} << 20);
  CHECK(plain->limits.open_files_per_uid == 4096);
  CHECK(Topology::builtin().limits.table_memory == defaults.table_memory);

  auto set = Topology::parse(machine + "[limits]\ndma_entry_limit = 10\ntable_memory = \"64M\"\n"
                                       "iommufd_objects = 0x100\nioas_mappings = 1000\n"
                                       "open_files_per_uid = 0\n", &error);
  INFO(error);
  REQUIRE(set);
  CHECK(set->limits.dma_entry_limit == 10);
  CHECK(set->limits.table_memory == u64{64} << 20);
  CHECK(set->limits.iommufd_objects == 0x100);
  CHECK(set->limits.ioas_mappings == 1000);
  CHECK(set->limits.open_files_per_uid == 0);
  // Only what is given changes; a size may be a plain number of bytes.
  auto some = Topology::parse("[limits]\ntable_memory = 1048576\n" + machine, &error);
  REQUIRE(some);
  CHECK(some->limits.table_memory == u64{1} << 20);
  CHECK(some->limits.dma_entry_limit == defaults.dma_entry_limit);

  CHECK_THAT(parse_error(machine + "[limits]\ndma_entry_limit = -1\n"),
             Catch::Contains("limits: 'dma_entry_limit' must be a non-negative integer"));
  CHECK_THAT(parse_error(machine + "[limits]\nioas_mappings = 0x100000000\n"),
             Catch::Contains("limits: 'ioas_mappings' is too large"));
  CHECK_THAT(parse_error(machine + "[limits]\ntable_memory = \"lots\"\n"),
             Catch::Contains("limits: 'table_memory' must be a size"));
  CHECK_THAT(parse_error(machine + "[limits]\ntable_memory = 0\n"),
             Catch::Contains("limits: 'table_memory' must be positive"));
  CHECK_THAT(parse_error("limits = 3\n" + machine), Catch::Contains("[limits] must be a table"));
}
