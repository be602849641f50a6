// What the FUSE and CUSE transports share: opening and releasing a node's file for a caller (with
// the close/reopen handshake), and what CUSE answers to read(2)/write(2). Ioctls: serve_ioctl
// (cuse/ioctl_service.h).
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

// The open file behind a file handle the kernel passes back (fi->fh, set by serve_open).
Handle* handle_of(const fuse_file_info* fi);

// Answers open(2) request `req` of `node` for `caller`: the emulator's open, tried once more
// after just-closed files are released when it meets EBUSY (cuse/open_files.h); the file goes to
// the kernel as fi->fh (the transport has set fi's other fields). A caller that is gone before
// the reply reaches it (interrupted) never gets the file: the open is undone. Errors (to the
// caller): those of Emulator::open.
void serve_open(core::Emulator& emu, OpenFiles& files, fuse_req_t req, fuse_file_info* fi,
                const core::NodeInfo& node, const core::Caller& caller);

// Answers the release request `req` of the file in `fi` (its last close): the emulator's release
// first, then the handshake's, so that an open or ioctl waiting for this file to go
// (OpenFiles::settle) runs again only once the emulator has let go of it.
void serve_release(core::Emulator& emu, OpenFiles& files, fuse_req_t req, fuse_file_info* fi);

// read(2)/write(2) of `size` bytes on a CUSE node. CUSE sends position 0 on every read and write
// (fs/fuse/cuse.c), and device regions are at offsets, so a read would silently be one of region
// 0 at 0. The file gets the errno Linux gives before any region is looked at (EINVAL: not a
// device, or not bound), and a bound device ESPIPE, the kernel's own answer to pread(2) on a
// CUSE node; regions are reached through FUSE. Returns ok (and nothing is transferred) only for
// size 0. Errors: EINVAL, ESPIPE.
Status cuse_rw_check(core::Emulator& emu, core::File& file, const std::string& node_name,
                     std::size_t size, core::u64 off, bool write);

}  // namespace vfio_emu::cuse
