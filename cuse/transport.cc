#include "cuse/transport.h"

#include <cerrno>

#include "core/log.h"

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

Status cuse_rw_check(core::Emulator& emu, core::File& file, const std::string& node_name,
                     std::size_t size, core::u64 off, bool write) {
  auto probe = write ? emu.write(file, 0, nullptr, 0) : emu.read(file, 0, nullptr, 0);
  if (!probe) return Err{probe.error()};
  if (size == 0) return {};
  logger("cuse")->info("{} {} of {:#x} bytes at {:#x}: CUSE carries no file position, so device "
                       "regions are reached only through the FUSE transport: ESPIPE",
                       node_name, write ? "write" : "read", size, off);
  return Err{ESPIPE};
}

}  // namespace vfio_emu::cuse
