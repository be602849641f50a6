#include "cuse/transport.h"

#include <cerrno>

namespace vfio_emu::cuse {

Result<std::shared_ptr<core::File>> open_node(core::Emulator& emu, OpenFiles& files,
                                              const core::NodeInfo& node,
                                              const core::Caller& caller) {
  auto r = emu.open(node, caller);
  if (!r && r.error() == EBUSY && node.kind == core::NodeKind::kGroup) {
    const u64 holder = emu.group_holder(node.index);
    if (holder != 0 && files.wait_release_after_flush(holder, std::chrono::seconds(2)))
      r = emu.open(node, caller);
  }
  if (r) files.opened(**r);
  return r;
}

}  // namespace vfio_emu::cuse
