// What the FUSE and CUSE transports share: opening a node for a caller (with the close/reopen
// handshake); and what CUSE answers to read(2)/write(2).
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <cstddef>
#include <memory>
#include <string>

#include "core/emulator.h"
#include "cuse/open_files.h"
#include "cuse/ioctl_service.h"

namespace vfio_emu::cuse {

// open(2) of `node`: the emulator's open, tried once more after just-closed files are released
// when it meets EBUSY (cuse/open_files.h). Errors: those of Emulator::open.
Result<std::shared_ptr<core::File>> open_node(core::Emulator& emu, OpenFiles& files,
                                              const core::NodeInfo& node,
                                              const core::Caller& caller);

// Answers ioctl request `req`: now, or, when it must resolve an fd argument, later from one of
// the service's deferred threads (EAGAIN when none can take it).
void serve_ioctl(IoctlService& service, fuse_req_t req, const IoctlRequest& rq);

// read(2)/write(2) of `size` bytes on a CUSE node. CUSE sends position 0 on every read and write
// (fs/fuse/cuse.c), and device regions are at offsets, so a read would silently be one of region
// 0 at 0. The file gets the errno Linux gives before any region is looked at (EINVAL: not a
// device, or not bound), and a bound device ESPIPE, the kernel's own answer to pread(2) on a
// CUSE node; regions are reached through FUSE. Returns ok (and nothing is transferred) only for
// size 0. Errors: EINVAL, ESPIPE.
Status cuse_rw_check(core::Emulator& emu, core::File& file, const std::string& node_name,
                     std::size_t size, core::u64 off, bool write);

}  // namespace vfio_emu::cuse
