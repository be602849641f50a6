// The kernel's side of one CUSE channel, played by a test: what fs/fuse/cuse.c and
// fs/fuse/ioctl.c send and check, so the daemon's CUSE sessions can be tested on kernels without
// CONFIG_CUSE (shared/spec/cuse-fuse-transport.md §1.1, §2.1, §3).
//
// The test process is "the caller": the ioctl argument and the iovec bases the daemon names in
// FUSE_IOCTL_RETRY replies are addresses in this process. They are copied with
// process_vm_readv/writev on ourselves, so a bad address gives EFAULT where the kernel's
// copy_page_from_iter / copy_folio_to_iter would fault, and the test never crashes on it.
//
// Every wait for a reply has a deadline: a daemon that never answers makes the call fail with
// ETIMEDOUT instead of hanging the test. The kernel's retry loop has no round limit; ours stops
// after kMaxIoctlRounds with ELOOP, for the same reason.
#pragma once

#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"

namespace vfio_emu::test {

// What one ioctl(2) on the CUSE node gave the caller.
struct IoctlOutcome {
  long ret = 0;    // the ioctl's return value (>= 0), or -errno
  int rounds = 0;  // FUSE_IOCTL requests sent: 1 without retry, 1 + one per FUSE_IOCTL_RETRY
};

class CuseKernel {
 public:
  // fs/fuse/ioctl.c: FUSE_IOCTL_MAX_IOV, and fc->max_pages (32, never negotiated by CUSE) pages.
  static constexpr std::size_t kMaxIovecs = FUSE_IOCTL_MAX_IOV;
  static constexpr std::size_t kMaxBytesPerDirection = 32 * 4096;
  static constexpr int kMaxIoctlRounds = 64;
  // cuse_init_in as Debian's libfuse 3.14 speaks it (protocol 7.31; the kernel offers its own).
  static constexpr std::uint32_t kProtoMajor = 7;
  static constexpr std::uint32_t kProtoMinor = 31;

  // Takes ownership of `fd`, our end of a SOCK_SEQPACKET channel to the daemon.
  explicit CuseKernel(int fd,
                      std::chrono::milliseconds reply_timeout = std::chrono::seconds(10));
  ~CuseKernel();
  CuseKernel(const CuseKernel&) = delete;
  CuseKernel& operator=(const CuseKernel&) = delete;

  // CUSE_INIT in the kernel's two steps: cuse_channel_open() queues the request as soon as the
  // channel is opened, and the device exists once the daemon's reply is processed
  // (cuse_process_init_reply). send_init errors: ENOTCONN.
  Status send_init();
  // Waits for the reply and checks it as the kernel does; returns the DEVNAME. Errors:
  // ETIMEDOUT, ENOTCONN, EIO (malformed reply), EPROTO (major != 7, minor < 11, or no
  // CUSE_UNRESTRICTED_IOCTL, which this daemon must ask for), EINVAL (device info not
  // NUL-terminated, empty key, no or empty DEVNAME), or the daemon's own error.
  Result<std::string> finish_init();
  Result<std::string> init();  // both

  // open(2) of the node: FUSE_OPEN with nodeid 0 (cuse_open -> fuse_do_open). Returns the fh.
  Result<std::uint64_t> open(std::uint32_t flags = O_RDWR);
  // The last close(2): FUSE_RELEASE, synchronous for CUSE (fuse_sync_release).
  Status release(std::uint64_t fh, std::uint32_t flags = O_RDWR);
  // read(2)/write(2): FUSE_READ/FUSE_WRITE at offset 0, as CUSE always sends, at most
  // max_read/max_write bytes per request. Return the byte count.
  Result<std::size_t> read(std::uint64_t fh, void* buf, std::size_t len);
  Result<std::size_t> write(std::uint64_t fh, const void* buf, std::size_t len);
  // ioctl(2) through fuse_do_ioctl in FUSE_IOCTL_UNRESTRICTED mode: the first request carries
  // no data; each FUSE_IOCTL_RETRY reply names the iovecs the next round must carry. Errors as
  // the caller sees them: the daemon's, ENOTTY for ENOSYS, EFAULT (an iovec of ours cannot be
  // read or written), ENOMEM (more than 256 iovecs or 128 KiB in one direction), EIO (malformed
  // retry reply, or more reply bytes than out room), ETIMEDOUT, ENOTCONN, ELOOP.
  IoctlOutcome ioctl(std::uint64_t fh, std::uint32_t cmd, std::uint64_t arg);
  IoctlOutcome ioctl(std::uint64_t fh, std::uint32_t cmd, const void* arg) {
    return ioctl(fh, cmd, reinterpret_cast<std::uint64_t>(arg));
  }

  // The pid field of the requests: by default the calling thread's id (gettid()), as the kernel
  // sends it; 0 is what a caller outside the daemon's pid namespace looks like.
  void set_caller_pid(std::optional<pid_t> pid) { caller_pid_ = pid; }

  // Whether a message from the daemon is waiting within `wait` (without reading it).
  bool message_waiting(std::chrono::milliseconds wait = std::chrono::milliseconds(0)) const;
  // Closes our end: what the kernel does when the daemon's /dev/cuse file is finally released.
  void close();
  bool is_open() const { return fd_ >= 0; }

  std::uint32_t max_read() const { return max_read_; }
  std::uint32_t max_write() const { return max_write_; }
  // The last protocol violation seen from the daemon, for failure messages ("" if none).
  const std::string& last_problem() const { return problem_; }

 private:
  struct Reply {
    int error = 0;  // fuse_out_header.error, as a positive errno
    std::vector<std::uint8_t> payload;
  };
  struct Iovec {
    std::uint64_t base;
    std::uint64_t len;
  };

  // Sends one request (header + the given pieces) and waits for the reply with its unique.
  Result<Reply> exchange(std::uint32_t opcode, std::uint64_t nodeid,
                         std::initializer_list<std::pair<const void*, std::size_t>> pieces);
  Status send_request(std::uint64_t unique, std::uint32_t opcode, std::uint64_t nodeid,
                      std::initializer_list<std::pair<const void*, std::size_t>> pieces);
  Result<Reply> await_reply(std::uint64_t unique);
  Err protocol_error(int code, std::string what);
  // One FUSE_IOCTL round: the request with the in-data of `in`, the reply checked.
  long ioctl_round(std::uint64_t fh, std::uint32_t cmd, std::uint64_t arg,
                   std::vector<Iovec>& in, std::vector<Iovec>& out, bool* retry);

  int fd_;
  std::chrono::milliseconds timeout_;
  std::uint64_t next_unique_ = 1;
  std::uint64_t init_unique_ = 0;
  std::optional<pid_t> caller_pid_;
  bool unrestricted_ = false;
  std::uint32_t max_read_ = 4096;
  std::uint32_t max_write_ = 4096;
  std::string problem_;
};

}  // namespace vfio_emu::test
