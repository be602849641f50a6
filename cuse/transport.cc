#include "cuse/transport.h"

#include <cerrno>

namespace vfio_emu::cuse {

Result<std::shared_ptr<core::File>> open_node(core::Emulator& emu, OpenFiles& files,
                                              const core::NodeInfo& node,
                                              const core::Caller& caller) {
  const u64 releases = files.releases();
  auto r = emu.open(node, caller);
  // A group held by a file that was just closed (its RELEASE on the way): once more after it.
  if (!r && r.error() == EBUSY && files.settle_recent_closes(releases)) r = emu.open(node, caller);
  if (r) files.opened(**r);
  return r;
}

}  // namespace vfio_emu::cuse
