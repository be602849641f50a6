// What a file descriptor of a caller is, learned without touching the file.
//
// A caller may pass any fd where an ioctl wants one of ours: a pipe, a socket, or a file of a
// stalled FUSE filesystem. Fetching that file into the daemon (pidfd_getfd) would make the
// daemon's eventual close() a FLUSH request to the stalled filesystem, and fstat() a GETATTR; both
// block. So the file is first looked at through /proc/<tid>/fd/<fd>: statx with
// AT_STATX_DONT_SYNC (the cached attributes: FUSE sends no GETATTR) and readlink (the path the
// kernel already knows). Only a file that is one of ours, or an eventfd, is ever fetched.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

#include "base/result.h"

namespace vfio_emu::cuse {

struct FdFacts {
  struct stat st {};  // dev, ino, mode and rdev are filled (from statx)
  std::string link;   // readlink of the /proc fd entry: a path, or "anon_inode:[eventfd]", ...
};

// The facts of fd `fd` of thread `tid`. Errors: EBADF (not open, the thread is gone, or its fds
// are out of our reach).
Result<FdFacts> probe_caller_fd(pid_t tid, int fd);

// The same for one of the daemon's own fds (after fetching one: the caller may have swapped the
// file behind the number meanwhile). Errors: EBADF.
Result<FdFacts> probe_own_fd(int fd);

// Whether the /proc link text names an eventfd (eventfd_ctx_fileget's f_op check).
bool is_eventfd(const FdFacts& facts);
// The same for an fd of this process.
bool is_eventfd_link(int fd);

// Closes an fd of the daemon's that may belong to a foreign filesystem, without blocking the
// calling thread on it: a close() of a FUSE file is a synchronous FLUSH, which a stalled
// filesystem never answers. The fd is handed to one closer thread (a bounded queue; when it is
// full, the caller closes it itself).
void close_foreign(int fd);

}  // namespace vfio_emu::cuse
