// The caller of one ioctl (or open), as the core's seams see it: its memory, reached directly
// with process_vm_readv/writev or through the CUSE retry protocol; the fd numbers it passes,
// resolved to our open files or fetched eventfds; its mappings, limits and capabilities.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/context.h"

namespace vfio_emu::core {
class Emulator;
}  // namespace vfio_emu::core

namespace vfio_emu::cuse {

using core::u32;
using core::u64;
using core::u8;

enum class ArgAccess : u8 {
  kAuto,    // direct; a request whose caller cannot be reached falls back to retry
  kDirect,  // process_vm_readv/writev on the caller's thread: one round trip
  kRetry,   // the kernel's FUSE_IOCTL_RETRY protocol (CUSE only): 2-3 round trips
};

// What the transport knows about its nodes, for proving that an fd is one of ours.
class NodeIdentity {
 public:
  virtual ~NodeIdentity() = default;
  // True if a file with these stat results is one of our nodes (FUSE: our mount's st_dev and a
  // node inode; CUSE: a character device with one of our device numbers).
  virtual bool is_ours(const struct stat& st) const = 0;
};

// The state the retry protocol keeps between the rounds of one ioctl of one thread: the kernel
// sends back the data of the iovecs asked for, in order, but not the iovecs themselves.
class RetryRounds {
 public:
  struct Pending {
    u64 fh = 0;
    u32 cmd = 0;
    u64 arg = 0;
    std::vector<iovec> in;
    std::vector<iovec> out;
  };
  // The iovecs of the previous round of `tid`'s ioctl, if the request continues it.
  bool take(pid_t tid, u64 fh, u32 cmd, u64 arg, size_t in_size, size_t out_size, Pending* p);
  void put(pid_t tid, Pending p);

 private:
  std::mutex mu_;
  std::unordered_map<pid_t, Pending> pending_;
};

// Everything one ioctl (or open) needs about its caller. Implements the core's seams.
class RequestCaller final : public core::UserMemory,
                            public core::FdResolver,
                            public core::CallerEnv {
 public:
  RequestCaller(core::Emulator& emu, const NodeIdentity& nodes, const core::Caller& caller)
      : emu_(emu), nodes_(nodes), caller_(caller) {}

  // Direct access: read/write go straight to the caller. If `fallback` is set, a caller that
  // cannot be reached makes read() answer kNeedRetry, so the request can be redone in retry
  // mode; otherwise it answers EPERM.
  void use_direct(bool fallback) {
    retry_ = false;
    fallback_ = fallback;
  }
  // On a request thread, resolve() answers kNeedDefer for an fd that must be identified (a round
  // trip into this daemon); on a thread of DeferredCalls it identifies it.
  void on_request_thread(bool yes) { on_request_thread_ = yes; }
  // Retry protocol: `in` holds the data of the in-iovecs `in_iovs` (in order); out-iovecs
  // `out_iovs` may be written. Reads or writes outside them ask for another round.
  void use_retry(const std::vector<iovec>& in_iovs, const u8* in, size_t in_size,
                 const std::vector<iovec>& out_iovs);

  // After kNeedRetry: the iovecs the next round must carry.
  const std::vector<iovec>& next_in() const { return next_in_; }
  const std::vector<iovec>& next_out() const { return next_out_; }
  // After completion in retry mode: the bytes for the out-iovecs, in order.
  std::vector<u8> out_data() const;
  bool unreachable() const { return unreachable_; }

  // core::UserMemory
  Status read(u64 addr, void* dst, std::size_t len) override;
  std::size_t read_ahead(u64 addr, void* dst, std::size_t len) override;
  Status will_write(u64 addr, std::size_t len) override;
  Status write(u64 addr, const void* src, std::size_t len) override;
  // core::FdResolver: proven ours from /proc without touching the file (cuse/fd_probe.h), then
  // fetched with pidfd_getfd and identified with VFIO_EMU_IDENTIFY (which this daemon answers).
  Result<std::shared_ptr<core::File>> resolve(int fd) override;
  // core::FdResolver: proven an eventfd from /proc, then fetched with pidfd_getfd.
  Result<core::UniqueFd> take_eventfd(int fd) override;
  // core::CallerEnv
  u64 dma_accessible(u64 addr, u64 len, core::Prot prot) override;
  // ... up to a mapping of one of our nodes (a device's BAR).
  u64 dma_pinnable(u64 addr, u64 len, core::Prot prot) override;
  // Whether a mapping of (st_dev, st_ino), as /proc shows it, is of one of our nodes: a BAR.
  bool is_device_bar(dev_t dev, u64 ino) const;
  u32 pinned_page_shift(u64 addr, u64 len, u32 natural_shift, u32 base_shift) override;
  u64 memlock_limit() override;
  bool capable(int cap) override;

 private:
  // Where [addr, addr+len) lies in the in data (retry mode), or nullptr.
  const u8* find_in(u64 addr, std::size_t len) const;
  u8* find_out(u64 addr, std::size_t len);
  void ask_in(u64 addr, std::size_t len);
  // pidfd_getfd of the caller's `fd`. Errors: EBADF (not open, or the caller is out of reach).
  Result<core::UniqueFd> fetch_caller_fd(int fd);

  core::Emulator& emu_;
  const NodeIdentity& nodes_;
  core::Caller caller_;
  bool retry_ = false;
  bool fallback_ = false;
  bool on_request_thread_ = false;
  bool unreachable_ = false;
  std::vector<iovec> in_iovs_, out_iovs_;
  std::vector<u8> in_data_;
  std::vector<std::vector<u8>> out_shadow_;  // one per out-iovec
  std::vector<iovec> next_in_, next_out_;
};

// Limits of the kernel's ioctl retry protocol (fs/fuse/ioctl.c).
constexpr size_t kMaxRetryIovecs = 256;
constexpr size_t kMaxRetryBytes = 32 * 4096;  // fc->max_pages (32) for CUSE

}  // namespace vfio_emu::cuse
