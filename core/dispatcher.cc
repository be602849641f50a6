#include "core/dispatcher.h"

#include <algorithm>
#include <tuple>

namespace vfio_emu::core {

std::string_view backend_name(Backend b) {
  switch (b) {
    case Backend::kNone: return "";
    case Backend::kType1: return "type1";
    case Backend::kSpapr: return "spapr";
    case Backend::kIommufdCompat: return "vfio-compat";
  }
  return "?";
}

std::span<const Command> all_commands() {
  static const std::vector<Command> all = [] {
    std::vector<Command> v;
    for (auto table : {container_commands(), type1_commands(), spapr_commands(), group_commands(),
                       device_commands(), iommufd_commands(), iommufd_compat_commands()})
      v.insert(v.end(), table.begin(), table.end());
    std::stable_sort(v.begin(), v.end(), [](const Command& a, const Command& b) {
      return std::tuple(a.node, a.backend, a.cmd) < std::tuple(b.node, b.backend, b.cmd);
    });
    return v;
  }();
  return all;
}

const Command* find_command(NodeKind node, Backend backend, u32 cmd) {
  for (const Command& c : all_commands())
    if (c.node == node && c.backend == backend && c.cmd == cmd) return &c;
  return nullptr;
}

}  // namespace vfio_emu::core
