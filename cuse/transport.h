// What the FUSE and CUSE transports share: opening a node for a caller (with the close/reopen
// handshake), and the FUSE_USE_VERSION both are built with.
#pragma once

#include <memory>

#include "core/emulator.h"
#include "cuse/open_files.h"

namespace vfio_emu::cuse {

// open(2) of `node`: the emulator's open, tried once more after just-closed files are released
// when it meets EBUSY (cuse/open_files.h). Errors: those of Emulator::open.
Result<std::shared_ptr<core::File>> open_node(core::Emulator& emu, OpenFiles& files,
                                              const core::NodeInfo& node,
                                              const core::Caller& caller);

}  // namespace vfio_emu::cuse
