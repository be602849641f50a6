// What the FUSE and CUSE transports share: opening a node for a caller (with the close/reopen
// handshake), and the FUSE_USE_VERSION both are built with.
#pragma once

#include <memory>

#include "core/emulator.h"
#include "cuse/open_files.h"

namespace vfio_emu::cuse {

// open(2) of `node`: the emulator's open, waiting for a just-closed holder of a group to be
// released (FUSE releases asynchronously). Errors: those of Emulator::open.
Result<std::shared_ptr<core::File>> open_node(core::Emulator& emu, OpenFiles& files,
                                              const core::NodeInfo& node,
                                              const core::Caller& caller);

}  // namespace vfio_emu::cuse
