// Serving one ioctl from a FUSE or CUSE request: reaching the caller's memory (directly with
// process_vm_readv/writev, or through the CUSE retry protocol), resolving fd numbers the caller
// passes, and turning the core's answer into the reply the kernel expects.
#pragma once

#include <sys/stat.h>
#include <sys/uio.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/context.h"
#include "core/emulator.h"
#include "cuse/deferred_calls.h"
#include "cuse/open_files.h"

namespace vfio_emu::cuse {

using core::u32;
using core::u64;
using core::u8;

enum class ArgAccess : u8 {
  kAuto,    // direct; a request whose caller cannot be reached falls back to retry
  kDirect,  // process_vm_readv/writev on the caller's thread: one round trip
  kRetry,   // the kernel's FUSE_IOCTL_RETRY protocol (CUSE only): 2-3 round trips
};

// tid -> tgid. Entries hold a pidfd of the thread, so a reused tid is never mistaken for the
// thread it replaced. The pidfds count against the daemon's RLIMIT_NOFILE, which the daemon needs
// for its real work (fetching callers' fds), so: an entry lasts only as long as its thread (the
// ExitWatcher drops it, and closes its pidfd, when the thread exits: nothing is kept for dead
// callers); the cache holds at most a quarter of the limit (callers beyond are answered without
// being cached); the daemon's own threads are answered without being cached.
class ThreadGroups {
 public:
  // `max_entries` 0: a quarter of RLIMIT_NOFILE's soft limit (at least 16, at most 4096).
  explicit ThreadGroups(size_t max_entries = 0);
  // The thread-group id of `tid`, or 0 if the thread is gone or not visible.
  pid_t tgid_of(pid_t tid);
  size_t size() const;
  size_t max_entries() const { return max_entries_; }

 private:
  struct Entry {
    int pidfd;  // the ExitWatcher's: closed by it after the entry is dropped
    pid_t tgid;
  };
  // Shared with the watcher's callbacks, which may run after this object is gone.
  struct Cache {
    mutable std::mutex mu;
    std::unordered_map<pid_t, Entry> entries;
  };
  const size_t max_entries_;
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();
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

namespace vfio_emu::cuse {

// One ioctl request as the transport received it.
struct IoctlRequest {
  std::shared_ptr<core::File> file;
  std::string_view node_name;  // "vfio/1", for logs: the open file's own name
  core::Caller caller;
  u32 cmd = 0;
  u64 arg = 0;
  bool unrestricted = false;  // a CUSE request, which may use the retry protocol
  // Retry rounds: the data of the in-iovecs and the room of the out-iovecs (zero on a first
  // round and on FUSE). Owned by the transport's request buffer.
  const u8* in = nullptr;
  size_t in_size = 0;
  size_t out_size = 0;
};

// The answer to one ioctl request, in the kernel's terms. kDefer: not answered yet; the
// transport runs the request again through IoctlService::serve_deferred.
struct IoctlReply {
  enum class Kind : u8 { kDone, kRetry, kDefer } kind = Kind::kDone;
  long result = 0;             // >= 0, or -errno
  std::vector<u8> out;         // retry mode: bytes for the out-iovecs
  std::vector<iovec> in_iovs;  // kRetry: what the next round must carry
  std::vector<iovec> out_iovs;
};

// Serves ioctls for both transports.
class IoctlService {
 public:
  IoctlService(core::Emulator& emu, const NodeIdentity& nodes, ThreadGroups& threads,
               ArgAccess access)
      : emu_(emu), nodes_(nodes), threads_(threads), access_(access) {}

  // Serves `rq` on a request thread. Every exception ends here, as an errno.
  IoctlReply handle(const IoctlRequest& rq) { return handle(rq, true); }
  // Answers `rq` later, on a thread of its own (after handle() said kDefer): `send` gets the
  // reply there. Returns false when no thread can take it now (the queue is full, or the daemon
  // is stopping); the request is then to be answered with EAGAIN.
  bool defer(const IoctlRequest& rq, std::function<void(const IoctlReply&)> send);
  // Answers what is deferred, then ends its threads (after the transport aborted its
  // connection, so that nothing waits on the kernel).
  void stop_deferred() { deferred_.stop(); }

  core::Caller caller_from(pid_t tid, uid_t uid, gid_t gid) const;
  // The transport's open files (see cuse/open_files.h).
  OpenFiles& files() { return files_; }

 private:
  IoctlReply handle(const IoctlRequest& rq, bool on_request_thread);
  IoctlReply serve(const IoctlRequest& rq, bool on_request_thread);
  // `conflict`: where to put the id of the open file the call conflicted with, if any.
  IoctlReply run(const IoctlRequest& rq, RequestCaller& rc, bool retry, u64* conflict = nullptr);

  core::Emulator& emu_;
  const NodeIdentity& nodes_;
  ThreadGroups& threads_;
  ArgAccess access_;
  RetryRounds rounds_;
  OpenFiles files_;
  DeferredCalls deferred_;
  std::mutex unreachable_mu_;
  std::unordered_map<pid_t, bool> unreachable_;  // threads direct access failed on (auto mode)
};

}  // namespace vfio_emu::cuse
