// The command table (core/commands.cc): every row is found by its key through the index, numbers
// next to a row are not, and the flags the transports act on sit on exactly the commands Linux
// treats that way.
#include <catch2/catch.hpp>

#include <set>
#include <tuple>

#include "core/command.h"
#include "core/uapi/vfio.h"
#include "core/uapi/vfio_emu.h"

using namespace vfio_emu;
using namespace vfio_emu::core;

TEST_CASE("command table: every row is found by its key, and nothing else is", "[commands]") {
  const auto all = all_commands();
  REQUIRE(all.size() > 50);
  std::set<std::tuple<NodeKind, Backend, u32>> keys;
  for (const Command& c : all) {
    INFO(c.name);
    CHECK(keys.emplace(c.node, c.backend, c.cmd).second);
    CHECK(find_command(c.node, c.backend, c.cmd) == &c);
    // The same low byte with another type byte, or a direction/size encoded: not a command.
    CHECK(find_command(c.node, c.backend, (c.cmd & 0xff) | 0x3a00) == nullptr);
    CHECK(find_command(c.node, c.backend, c.cmd | 0x40000000u) == nullptr);
  }
  // Every number of VFIO's and iommufd's block on every slot: found exactly for the rows.
  size_t found = 0;
  for (NodeKind n : {NodeKind::kContainer, NodeKind::kGroup, NodeKind::kDevice, NodeKind::kIommufd})
    for (Backend b : {Backend::kNone, Backend::kType1, Backend::kSpapr, Backend::kIommufdCompat})
      for (u32 nr = 0; nr < 256; ++nr) {
        const Command* c = find_command(n, b, 0x3b00 | nr);
        if (c == nullptr) continue;
        ++found;
        CHECK(keys.count({n, b, 0x3b00 | nr}) == 1);
      }
  CHECK(found == all.size());
  // One number, a command per node kind: 0x3b70 is type1's GET_INFO on a container and
  // GET_PCI_HOT_RESET_INFO on a device; 0x3b6f (DEVICE_RESET) is nothing on a container.
  const Command* dev = find_command(NodeKind::kDevice, Backend::kNone, uapi::VFIO_IOMMU_GET_INFO);
  CHECK((dev != nullptr && dev->name == "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO"));
  CHECK(find_command(NodeKind::kContainer, Backend::kType1, uapi::VFIO_IOMMU_GET_INFO) != nullptr);
  CHECK(find_command(NodeKind::kContainer, Backend::kType1, uapi::VFIO_DEVICE_RESET) == nullptr);
}

TEST_CASE("command table: flags and argument rules", "[commands]") {
  for (const Command& c : all_commands()) {
    INFO(c.name);
    const bool bind_like =
        c.cmd == uapi::VFIO_DEVICE_BIND_IOMMUFD || c.cmd == uapi::VFIO_EMU_DEVICE_USE_GROUP;
    CHECK(c.has(kBeforeBind) == (c.node == NodeKind::kDevice && bind_like));
    CHECK(c.has(kWaitsForClosedFile) == (c.node == NodeKind::kDevice && bind_like));
    // Struct arguments have a reading rule and a minimum size; others have neither.
    if (c.arg == ArgKind::kStruct) {
      CHECK(c.rule != ArgRule::kNone);
      CHECK(c.min_size >= 8);
    } else {
      CHECK(c.rule == ArgRule::kNone);
    }
    CHECK((c.rule == ArgRule::kSize) == (c.kernel_size != 0));
    CHECK(c.handler != nullptr);
  }
}
