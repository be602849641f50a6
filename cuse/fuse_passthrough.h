// BAR mmap over FUSE by passthrough: the kernel maps a device file onto a backing file the daemon
// names (FUSE_PASSTHROUGH, Linux 6.9+), here the memfd holding the device's BARs
// (devices/bar_window.h). The file keeps FOPEN_DIRECT_IO, so pread/pwrite/ioctl still come to the
// daemon ("FOPEN_DIRECT_IO overrides FOPEN_PASSTHROUGH" for read/write; mmap goes to the backing
// file). A program's page faults never become requests: no daemon thread ever waits on its own
// mount for a mapping, and no mapping hangs when the daemon is stopped.
//
// libfuse 3.14 (Debian 12) predates passthrough, so the daemon speaks it on the raw channel
// (fuse_session_custom_io): it sees the INIT request's offer, asks for passthrough in INIT's
// reply, registers backing files with FUSE_DEV_IOC_BACKING_OPEN (CAP_SYS_ADMIN), and marks OPEN
// replies of device files with FOPEN_PASSTHROUGH and the backing id. The layouts below are
// include/uapi/linux/fuse.h's (protocol 7.40+), which Debian 12's headers predate.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <optional>

#include "base/ints.h"
#include "base/result.h"

namespace vfio_emu::cuse::passthrough {

// What an INIT request offers, when the raw bytes read are one.
struct InitOffer {
  u64 unique = 0;
  u32 major = 0;
  u32 minor = 0;
  bool passthrough = false;  // FUSE_INIT_EXT and FUSE_PASSTHROUGH in flags2
};
std::optional<InitOffer> parse_init_request(const void* buf, size_t len);

// The header of a reply about to be written: its request's unique and its error.
struct ReplyHeader {
  u64 unique = 0;
  int error = 0;
};
std::optional<ReplyHeader> reply_header(const iovec* iov, int count);

// Asks for passthrough in INIT's reply payload (fuse_init_out): FUSE_INIT_EXT, FUSE_PASSTHROUGH,
// max_stack_depth 1 (backing files are not on a stacked filesystem). False if too short.
bool ask_passthrough(const iovec* iov, int count);

// Marks an OPEN reply's payload (fuse_open_out) for passthrough to `backing_id`. False if the
// reply is not an open's (wrong length).
bool mark_open_passthrough(const iovec* iov, int count, int backing_id);

// FUSE_DEV_IOC_BACKING_OPEN on the session's /dev/fuse fd: the id for `fd`. Errors: the ioctl's
// errno (EPERM without CAP_SYS_ADMIN or passthrough; ENOTTY on a kernel without it).
Result<int> backing_open(int fuse_fd, int fd);
void backing_close(int fuse_fd, int id);

}  // namespace vfio_emu::cuse::passthrough
